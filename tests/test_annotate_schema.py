"""The annotation API's OpenAPI schema kept true, as tests/test_schema.py keeps the main app's: schemathesis generates
requests for every operation the annotation app publishes (routes added later included) and sends them over real HTTP
to uvicorn, with an annotator's token and with a reviewer's; every answer must be one the schema documents, in the
documented shape, and none a server error. On SQLite always, on PostgreSQL when MLPROJ_TEST_DATABASE_URL is set."""

import importlib.util
import os
import uuid
from collections import Counter

import httpx
import pytest
import schemathesis
from conftest import ROOT, make_settings
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import allow_header_conformance

from deploy.annotate.app import create_app
from mlproj import annotate as A
from mlproj.settings import load_settings

spec = importlib.util.spec_from_file_location('annotate_writes', ROOT / 'bench' / 'annotate_writes.py')
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)
PG = os.environ.get('MLPROJ_TEST_DATABASE_URL')

FAST_CASES = 50  # per operation and role in `make test`
FULL_CASES = 400  # per operation and role in `make test-full`: 7 operations x 2 roles x 400 = 5,600 a database

CASES = Counter()  # per database, role and operation, printed at the end (pytest -s)


@pytest.fixture(scope='module', params=['sqlite', 'postgresql'])
def served(request, tmp_path_factory):
    "uvicorn serving a project of 60 items, one already labelled once (so alpha is undefined); yields (url, tokens by role)."
    tmp = tmp_path_factory.mktemp('annotate-schema')
    if request.param == 'sqlite':
        url, db_cm = f'sqlite:///{tmp}/a.sqlite', None
    elif not PG:
        pytest.skip('MLPROJ_TEST_DATABASE_URL is not set (.ci/run sets it when PostgreSQL answers on 127.0.0.1:5432)')
    else:
        db_cm = bench.pg_database(PG, f'mlproj_test_annotate_schema_{os.getpid()}_{uuid.uuid4().hex[:6]}')
        url = db_cm.__enter__()
    try:
        s = make_settings(tmp, MLPROJ_ANNOTATE_DATABASE=url)
        people = bench.make_project(s, url, n_items=60, n_people=2, overlap=2, name='schema')
        db = A.open_db(s, url)
        reviewer = A.add_person(db, 'schema', 'rev', 'reviewer')
        first = A.person_for_token(db, people['a01'])
        A.answer(db, first, A.next_assignment(db, first)['id'], 3)
        db.close()
        with bench.serve(s, url) as (base, _):
            yield request.param, base, {'annotator': people['a00'], 'reviewer': reviewer}, (s, url)
    finally:
        if db_cm is not None:
            db_cm.__exit__(None, None, None)
        print(
            f'\nschemathesis cases sent ({request.param}): {sum(v for k, v in CASES.items() if k[0] == request.param)}',
            dict(CASES),
        )


# the schema the app publishes, every route in it (building the app opens no database: that happens at startup)
schema = schemathesis.openapi.from_dict(create_app(load_settings(), 'sqlite://').openapi())
SETTINGS = dict(suppress_health_check=list(HealthCheck), deadline=None, derandomize=True, database=None)


def check(case, served):
    "Send `case` with an annotator's token, then with a reviewer's, and check every answer against the schema."
    db, base, tokens, _ = served
    for role, token in tokens.items():
        CASES[db, role, case.operation.label] += 1
        # Starlette answers 405 for a path whose methods are separate routes (GET and POST /api/assignments/{id})
        # with the Allow of the first route only: a framework limitation, not a contract of ours
        case.call_and_validate(
            base_url=base, headers={'Authorization': f'Bearer {token}'}, excluded_checks=[allow_header_conformance]
        )


@schema.parametrize()
@settings(max_examples=FAST_CASES, **SETTINGS)
def test_every_annotation_operation_answers_as_its_schema_documents(case, served):
    check(case, served)


@pytest.mark.full
@schema.parametrize()
@settings(max_examples=FULL_CASES, **SETTINGS)
def test_every_annotation_operation_answers_as_its_schema_documents_at_length(case, served):
    check(case, served)


def test_ids_beyond_the_columns_range_are_refused_not_errors(served):
    "An id of 2^31 and more (PostgreSQL's INTEGER) or 2^63 (SQLite's) is refused with 422 before any query."
    _, base, tokens, _ = served
    with (
        httpx.Client(base_url=base, headers={'Authorization': f'Bearer {tokens["reviewer"]}'}) as rev,
        httpx.Client(base_url=base, headers={'Authorization': f'Bearer {tokens["annotator"]}'}) as ann,
    ):
        for big in (2**31, 2**63, 10**30):
            for r in (
                ann.get(f'/api/assignments/{big}'),
                ann.post(f'/api/assignments/{big}', json={'label': 1}),
                ann.get(f'/api/items/{big}/image'),
                rev.post(f'/api/review/{big}', json={'label': 1}),
                ann.post('/api/assignments/1', json={'label': 1, 'item_id': big}),
            ):
                assert r.status_code == 422 and 'less than or equal to 2147483647' in r.json()['detail'], (
                    r.request.url,
                    r.text,
                )
        assert ann.get(f'/api/assignments/{2**31 - 1}').status_code == 404  # the largest id is a fine id


def test_agreement_with_undefined_alpha_answers_null(served):
    "One label on one item: Krippendorff's alpha is undefined (NaN), which JSON cannot carry: the API and the page say so."
    _, base, _, (s, url) = served
    db = A.open_db(s, url)
    try:
        A.create_project(db, 'one-label', ['no', 'yes'], [('ab' * 32, 'image/png')], overlap=2)
        ann = A.person_for_token(db, A.add_person(db, 'one-label', 'ann'))
        A.answer(db, ann, A.next_assignment(db, ann)['id'], 1)
        reviewer = A.add_person(db, 'one-label', 'rev', 'reviewer')
    finally:
        db.close()
    with httpx.Client(base_url=base, headers={'Authorization': f'Bearer {reviewer}'}) as rev:
        r = rev.get('/api/agreement')
        assert r.status_code == 200 and r.json()['items_labelled'] == 1 and r.json()['alpha'] is None
        page = rev.get('/review')
        assert page.status_code == 200 and "Krippendorff's alpha – (no item has two labels yet)" in page.text


def test_booleans_are_not_integers(served):
    "`true` (or '1', or 1.5) is refused where an id or a label is expected, rather than read as 1; so is an unknown field."
    _, base, tokens, _ = served
    with httpx.Client(base_url=base, headers={'Authorization': f'Bearer {tokens["annotator"]}'}) as ann:
        a = ann.get('/api/next').json()['next']
        for body in (
            {'label': True, 'item_id': a['item_id']},
            {'label': 1, 'item_id': True},
            {'label': 1, 'exclude': [True]},
            {'label': 1.5},
            {'label': '1'},
            {'label': 1, 'lable': 2},
        ):
            r = ann.post(f'/api/assignments/{a["id"]}', json=body)
            assert r.status_code == 422 and isinstance(r.json()['detail'], str), (body, r.text)
        assert ann.get(f'/api/assignments/{a["id"]}').json()['state'] == 'leased'  # nothing of it was saved
