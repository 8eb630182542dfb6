"""Serving a row task (tests/tasks/tiny_rows.py, defined outside the package) over real HTTP: JSON rows, CSV, bad rows
refused with a 4xx naming the features, class names in the answers, an OpenAPI schema generated from the task, the
demo form, corrections stored as JSON, and a server that refuses a bundle of another task, at start and on reload."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest
from conftest import ServerProcess, make_settings, serving_env, uvicorn_argv, uvicorn_server
from fastapi.testclient import TestClient

from deploy.app import create_app
from mlproj.items import get_item, item_provenance
from mlproj.registry import open_registry
from mlproj.servicelike import list_corrections
from mlproj.store import Store

TASK_NAME = 'tests.tasks.tiny_rows'
ROW_ENV = {'MLPROJ_TASK_NAME': TASK_NAME}
SMALL = {'length': 10.0, 'width': 8.0, 'weight': 200.0}
LARGE = {'length': 60.0, 'width': 40.0, 'weight': 6000.0}
MEDIUM_IN_OTHER_UNITS = {'weight': '1.5 kg', 'length': '300 mm', 'width': '20 cm'}  # reordered, other units


def register_bundle(settings, tmp, task: str | None, classes: list | None, train_steps: int = 300) -> int:
    "An MLP for the tiny row task, fitted in a few hundred steps on its rows, exported and registered; its version."
    import torch

    from mlproj.model import export_onnx, save_net
    from mlproj.task import load_task
    from tests.tasks.tiny_rows import rows

    torch.manual_seed(0)
    net = load_task(TASK_NAME).network()
    X, y = rows(30)
    opt = torch.optim.Adam(net.parameters(), 0.03)
    for _ in range(train_steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(torch.from_numpy(X)), torch.from_numpy(y)).backward()
        opt.step()
    run = tmp / f'run-{task}'
    run.mkdir()
    save_net(net.eval(), run)
    export_onnx(net, run / 'model.onnx')
    per_class = {str(i): 1.0 for i in range(3)}
    evaluation = dict(
        model=dict(n=90, accuracy=1.0, macro_f1=1.0, per_class_recall=per_class),  # on its own training rows
        baseline=dict(accuracy=1 / 3, macro_f1=1 / 6, answer=0),
        acceptance=dict(passed=True),
        criteria={},
        split={},
        dataset_version='none',
    )
    provenance = {} if task is None else dict(task=task, classes=classes)
    return open_registry(settings).register(run, evaluation, train_run='tiny', **provenance)


@pytest.fixture(scope='module')
def store(tmp_path_factory):
    "A store holding version 1: a tiny_rows bundle."
    tmp = tmp_path_factory.mktemp('rows')
    s = make_settings(tmp, **ROW_ENV)
    assert register_bundle(s, tmp, TASK_NAME, ['small', 'medium', 'large']) == 1
    return tmp


@pytest.fixture(scope='module')
def url(store):
    "uvicorn serving the tiny row task's version 1."
    env = serving_env(store / 'store', store / 'reports', MLPROJ_MODEL='1', **ROW_ENV)
    with uvicorn_server(env) as srv:
        yield srv.url


def post(url, body=None, **kw):
    return (
        httpx.post(url + '/predict', json=body, timeout=30, **kw)
        if body is not None
        else httpx.post(url + '/predict', timeout=30, **kw)
    )


def refused(r, status) -> str:
    assert r.status_code == status, r.text
    d = r.json()['detail']
    assert isinstance(d, str) and len(d) > 15
    return d


def test_one_row_as_json_is_answered_with_its_class_name(url):
    body = post(url, SMALL).json()
    assert body['model_version'] == 1 and body['classes'] == ['small', 'medium', 'large']
    [p] = body['predictions']
    assert p['label'] == 0 and p['class'] == 'small'
    assert len(p['probabilities']) == 3 and sum(p['probabilities']) == pytest.approx(1, abs=1e-5)


@pytest.mark.parametrize('form', ['rows', 'list'])
def test_batches_of_rows_in_other_units_and_orders_are_read(url, form):
    rows = [SMALL, MEDIUM_IN_OTHER_UNITS, LARGE]
    r = post(url, {'rows': rows} if form == 'rows' else rows)
    assert [p['class'] for p in r.json()['predictions']] == ['small', 'medium', 'large'], r.text


def test_csv_with_a_header_is_read_as_the_json_rows_are(url):
    text = 'weight,length,width\n200,10,8\n"1.5 kg",300 mm,20\n6000,60,40\n'
    r = post(url, content=text.encode(), headers={'content-type': 'text/csv; charset=utf-8'})
    assert [p['class'] for p in r.json()['predictions']] == ['small', 'medium', 'large'], r.text
    assert r.json()['predictions'][0]['probabilities'] == post(url, SMALL).json()['predictions'][0]['probabilities']


def test_binary_answers_hold_one_probability_a_class(url):
    r = post(url, [SMALL, LARGE], headers={'accept': 'application/octet-stream'})
    assert r.status_code == 200 and np.frombuffer(r.content, '<f4').reshape(-1, 3).argmax(1).tolist() == [0, 2]


@pytest.mark.parametrize(
    'kw, status, says',
    [
        (
            dict(json={**SMALL, 'height': 3}),
            422,
            ["unknown feature 'height'", 'expected 3 features: length (cm), width (cm), weight (g)'],
        ),
        (dict(json={'length': 10, 'width': 8}), 422, ['missing weight', 'expected 3 features']),
        (dict(json={'rows': [SMALL, {**SMALL, 'width': True}]}), 422, ['rows[1]: width is true']),
        (dict(json={**SMALL, 'weight': '2 cm'}), 422, ["weight: unit 'cm' is not a g measure"]),
        (dict(json={**SMALL, 'weight': 'NaN'}), 422, ['weight is not a finite number']),
        (dict(json=[SMALL, 7]), 422, ['[1] is the number 7, not an object']),
        (dict(json={'rows': []}), 422, ['no rows']),
        (dict(json='hello'), 422, ['must be an object or a list of objects']),
        (dict(content=b'{"length": 1', headers={'content-type': 'application/json'}), 400, ['not valid JSON']),
        (
            dict(content=b'length,width,size\n1,2,3\n', headers={'content-type': 'text/csv'}),
            422,
            ["unknown column 'size'"],
        ),
        (
            dict(content=b'length,width,weight\n1,2\n', headers={'content-type': 'text/csv'}),
            422,
            ['line 2 has 2 cells'],
        ),
        (dict(content=b'length,width,weight\n', headers={'content-type': 'text/csv'}), 422, ['no rows']),
        (dict(content=b'\xff\xfe', headers={'content-type': 'text/csv'}), 400, ['not UTF-8']),
        (dict(files=[('files', ('a.png', b'\x89PNG', 'image/png'))]), 415, ['multipart/form-data', 'length (cm)']),
        (dict(json=[SMALL] * 257), 413, ['257 rows in one request; at most 256']),
    ],
)
def test_bad_rows_get_a_4xx_naming_what_to_fix(url, kw, status, says):
    d = refused(post(url, **kw), status)
    for s in says:
        assert s in d, d


def test_openapi_schema_is_generated_from_the_task(url):
    schema = httpx.get(url + '/openapi.json').json()
    body = schema['paths']['/predict']['post']['requestBody']['content']
    assert set(body) == {'application/json', 'text/csv'}
    row = body['application/json']['schema']['oneOf'][0]
    assert row['required'] == ['length', 'width', 'weight'] and row['additionalProperties'] is False
    assert 'g' in row['properties']['weight']['description']
    parts = schema['components']['schemas']
    assert parts['Prediction']['properties']['class']['enum'] == ['small', 'medium', 'large']
    assert parts['Prediction']['properties']['label']['maximum'] == 2
    correction = schema['paths']['/corrections']['post']['requestBody']['content']['application/json']['schema']
    assert correction['properties']['label']['maximum'] == 2 and correction['properties']['row'] == row


def test_demo_page_is_a_form_prefilled_from_a_test_row(url):
    page = httpx.get(url + '/').text
    for f, unit in [('length', 'cm'), ('width', 'cm'), ('weight', 'g')]:
        assert f'name="{f}"' in page and f'({unit})' in page
    assert 'id="pad"' not in page and 'static/rows.js' in page and 'data-min-confidence="0.5"' in page
    assert all(f'>{c}</button>' in page for c in ('small', 'medium', 'large'))  # "it was a _", by class name
    from mlproj.task import load_task

    b = load_task(TASK_NAME).benchmark()
    first = json.loads(b.items[0])  # no test split behind this bundle: the task's benchmark gives the row
    assert f'value="{first["length"]:.6g}"' in page


def test_a_row_correction_is_kept_as_json_with_its_label(url, store):
    r = httpx.post(url + '/corrections', json={'row': MEDIUM_IN_OTHER_UNITS, 'label': 1}, timeout=30)
    assert r.status_code == 201, r.text
    sha = r.json()['sha256']
    st = Store(str(store / 'store'))
    assert (sha, 1) in [(c['sha256'], c['label']) for c in list_corrections(st)]
    prov = item_provenance(st, sha)
    assert prov['media_type'] == 'application/json' and prov['headers']['model_answer'] == 1
    assert json.loads(get_item(st, sha)) == MEDIUM_IN_OTHER_UNITS  # the row as sent, as JSON
    d = refused(httpx.post(url + '/corrections', json={'row': SMALL, 'label': 3}), 422)
    assert 'from 0 to 2' in d and '2 large' in d
    d = refused(httpx.post(url + '/corrections', json={'row': {'length': 1}, 'label': 0}), 422)
    assert 'missing width, weight' in d
    refused(httpx.post(url + '/corrections', files={'file': ('a.png', b'x')}, data={'label': '0'}), 415)


def test_a_server_refuses_a_bundle_of_another_task_at_start(store, tmp_path):
    env = serving_env(store / 'store', tmp_path / 'reports', MLPROJ_MODEL='production')  # settings.ini's task: digits
    open_registry(make_settings(tmp_path, MLPROJ_PATHS_STORE=str(store / 'store'))).set_alias('production', 1)
    with ServerProcess(uvicorn_argv(), env, ready='/health') as srv:
        d = refused(httpx.get(srv.url + '/ready'), 503)
        assert (
            f"the model store's production model (version 1) is for task '{TASK_NAME}'; this server runs task 'digits'"
            in d
        )
        assert refused(httpx.post(srv.url + '/predict', json={'pixels': [0] * 64}), 503) == d


def test_a_server_refuses_a_bundle_of_another_task_on_reload(store, tmp_path):
    import shutil

    shutil.copytree(store / 'store' / 'models', tmp_path / 'store' / 'models')
    s = make_settings(tmp_path, **ROW_ENV)
    with TestClient(create_app(s)) as c:
        assert c.get('/ready').json()['model_version'] == 1
        v = register_bundle(s, tmp_path, None, None, train_steps=1)  # no task recorded: a digits bundle
        open_registry(s).set_alias('production', v)  # promoted: the server serves production
        assert c.app.state.reloader.check(force=True) == 1  # refused: version 1 keeps serving
        why = c.get('/models').json()['reload_error']
        assert why and f'version {v} (' in why
        assert (
            f"the model store's production model (version {v}) is for task 'digits'; this server runs task '{TASK_NAME}'"
            in why
        )
        assert c.post('/predict', json=SMALL).json()['predictions'][0]['class'] == 'small'
