"""The OpenAPI schema kept true: schemathesis generates requests for every operation the app publishes (routes
added later included) and sends them over real HTTP to uvicorn serving a registered model; every answer must be
one the schema documents, in the documented shape, and none a server error."""

import io
import os
from collections import Counter

import numpy as np
import pytest
import schemathesis
from conftest import uvicorn_server
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from schemathesis.specs.openapi.checks import allow_header_conformance, positive_data_acceptance
from test_api import server_env

from deploy.app import create_app
from mlproj.settings import load_settings

if os.environ.get('PYTEST_XDIST_WORKER'):  # `make pytest` runs this module on its own after the others
    pytest.skip(
        'schemathesis gives all its operations one node id, so pytest-xdist would run only one: run this module '
        'without -n (`make pytest` does)',
        allow_module_level=True,
    )

FAST_CASES = 50  # per operation in `make test`
FULL_CASES = 1000  # per operation in `make test-full`


@pytest.fixture(scope='module')
def base_url(trained, tmp_path_factory):
    "uvicorn serving the fixture's model version 1, with an API token the generated requests do not know."
    # endpoints behind a token then answer 401/403 (a server without tokens answers 503, which schemathesis counts
    # as a server error even where documented)
    env = server_env(
        trained,
        tmp_path_factory.mktemp('schema'),
        MLPROJ_MODEL='1',
        MLPROJ_API_TOKENS='schema-test:a-secret-no-generated-request-knows',
    )
    with uvicorn_server(env) as srv:
        yield srv.url
    print(f'\nschemathesis cases sent: {sum(CASES.values())}', dict(CASES))


BINARY = ('multipart/form-data', 'application/x-npy', 'application/octet-stream')  # request bodies of bytes


def _npy(a) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


# .npy bodies for schemathesis, which knows no such media type: arrays of counts of every accepted shape and dtype,
# out-of-range values, booleans, and bytes that are no .npy file at all
SHAPES = st.sampled_from([(64,), (8, 8), (3, 64), (2, 8, 8), (5,)])
schemathesis.openapi.media_type(
    'application/x-npy',
    st.one_of(
        arrays(st.sampled_from(['u1', 'i8', '<f4', '>f8']), SHAPES, elements=st.integers(0, 17)).map(_npy),
        arrays('?', SHAPES).map(_npy),
        st.binary(max_size=300),
    ),
)

CASES = Counter()  # per operation, printed at the end (pytest -s)


# the schema the app publishes, every route in it (building the app loads no model: that happens at startup), for
# the task the server below serves: the digits (the fixture's model), whatever the project's task is
schema = schemathesis.openapi.from_dict(create_app(load_settings(env={'MLPROJ_TASK_NAME': 'digits'})).openapi())
SETTINGS = dict(suppress_health_check=list(HealthCheck), deadline=None, derandomize=True, database=None)


def check(case, base_url):
    "Send `case` over HTTP and check every answer against the schema (JSON bodies: schema-valid must be accepted)."
    # an uploaded file's bytes, a .npy file or raw counts cannot be described by a schema (any binary matches), so a
    # schema-valid upload may still be refused as not a digit (422, documented): acceptance of valid data is checked
    # for JSON bodies only
    CASES[case.operation.label] += 1
    skip = [positive_data_acceptance] if case.media_type in BINARY else []
    # Starlette answers 405 for a path whose methods are separate routes (GET /jobs, POST /jobs) with the Allow of
    # the first route only: a framework limitation, not a contract of ours
    skip.append(allow_header_conformance)
    case.call_and_validate(base_url=base_url, excluded_checks=skip)


@schema.parametrize()
@settings(max_examples=FAST_CASES, **SETTINGS)
def test_every_operation_answers_as_its_schema_documents(case, base_url):
    check(case, base_url)


@pytest.mark.full
@schema.parametrize()
@settings(max_examples=FULL_CASES, **SETTINGS)
def test_every_operation_answers_as_its_schema_documents_at_length(case, base_url):
    check(case, base_url)
