"""The scoring tool over real HTTP (uvicorn): a predictions CSV scored against a dataset version's test split, the
report, the leaderboard in SQLite, bad files refused with line numbers (never a 500); and the reports index served."""

import json

import httpx
import numpy as np
import pytest
from conftest import SHORT_RUN_SERVICE_LIKE, uvicorn_server
from test_api import server_env

from mlproj.data import split_labels
from mlproj.evaluate import split_items
from mlproj.score import MAX_BYTES
from mlproj.store import Store
from mlproj.versions import get_version


@pytest.fixture(scope='module')
def served(trained, tmp_path_factory):
    "uvicorn serving the fixture's store, with the reports (and the leaderboard) in a folder of this module."
    tmp = tmp_path_factory.mktemp('score')
    env = server_env(trained, tmp, MLPROJ_MODEL='1', MLPROJ_SCORE_SUBMISSIONS_PER_HOUR='0', **SHORT_RUN_SERVICE_LIKE)
    with uvicorn_server(env) as srv, httpx.Client(base_url=srv.url, timeout=120) as client:
        yield client, tmp


@pytest.fixture(scope='module')
def limited(trained, tmp_path_factory):
    "uvicorn as `served`, with [score] submissions_per_hour = 3."
    env = server_env(
        trained,
        tmp_path_factory.mktemp('limited'),
        MLPROJ_MODEL='1',
        MLPROJ_SCORE_SUBMISSIONS_PER_HOUR='3',
        **SHORT_RUN_SERVICE_LIKE,
    )
    with uvicorn_server(env) as srv, httpx.Client(base_url=srv.url, timeout=120) as client:
        yield client


@pytest.fixture(scope='module')
def split(trained):
    "The benchmark's test split: item ids and labels."
    settings, _, ev = trained
    st = Store(settings.store_url)
    return split_items(st, ev['dataset_version'], 'test'), split_labels(st, ev['dataset_version'], 'test')


def csv_of(items, labels, confidence=None, header='item,label') -> bytes:
    rows = [
        f'{i},{l}' + ('' if confidence is None else f',{c}')
        for i, l, c in zip(items, labels, confidence if confidence is not None else [None] * len(items))
    ]
    return (header + ('' if confidence is None else ',confidence') + '\n' + '\n'.join(rows) + '\n').encode()


def submit(client, data: bytes, **fields):
    return client.post('/score/submissions', files={'file': ('predictions.csv', data, 'text/csv')}, data=fields)


def errors_of(r, status=422) -> list:
    assert r.status_code == status, r.text
    body = r.json()
    assert body['detail'] and isinstance(body['errors'], list)
    return body['errors']


def test_scoring_a_file_gives_the_evaluation_figures_and_a_place_on_the_leaderboard(served, split, trained):
    client, _ = served
    items, y = split
    vid = trained[2]['dataset_version']
    wrong = np.where(np.arange(len(y)) % 5 == 0, (y + 1) % 10, y)  # one answer in five wrong
    r = submit(
        client, csv_of(items, wrong, np.full(len(y), 0.95)), name='team fives', version='benchmark', report='true'
    )
    assert r.status_code == 200, r.text
    body = r.json()
    m, s = body['metrics'], body['submission']
    assert m['accuracy'] == pytest.approx(np.mean(wrong == y)) and s['dataset_version'] == vid and s['rank'] >= 1
    assert m['ece'] == pytest.approx(abs(0.95 - m['accuracy']), abs=1e-6) and len(m['reliability']) == 1
    assert m['per_class_recall'] and m['per_class_precision']  # figures over many items, per class too
    assert 'mistakes' not in m and 'confusion' not in m  # a list of items with labels, and what gives labels as surely
    page = body['report_html']
    for title in ('Summary', 'Calibration', 'Accuracy by slice'):
        assert f'<h2>{title}</h2>' in page
    assert (
        'Confusion matrices' not in page
        and 'Most confident mistakes' not in page
        and page.count('<img class="figure"') >= 2
    )
    # a perfect file by the id prefix of the version, without confidences: first place; no calibration for it
    r = submit(client, csv_of(items, y), name='team perfect', version=vid[:8])
    assert r.status_code == 200, r.text
    assert (
        r.json()['submission']['rank'] == 1
        and r.json()['metrics'].get('ece') is None
        and r.json()['report_html'] is None
    )
    board = client.get('/score/submissions', params={'version': 'benchmark'}).json()
    names = [x['name'] for x in board['submissions']]
    assert names.index('team perfect') < names.index('team fives') and board['submissions'][0]['rank'] == 1
    html = client.get('/score').text
    assert 'team perfect' in html and 'team fives' in html and vid in html


def per_item_fields(value, n: int, path='') -> list:
    "Where in a JSON value a list as long as the split is (one entry per item), or an item id, is."
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in per_item_fields(v, n, f'{path}.{k}')]
    if isinstance(value, list):
        return ([path] if len(value) == n else []) + [
            p for i, v in enumerate(value) for p in per_item_fields(v, n, f'{path}[{i}]')
        ]
    return [path] if isinstance(value, str) and len(value) == 64 and path != '.submission.file_sha256' else []


@pytest.mark.parametrize('version', ['benchmark', 'service-like'])
def test_no_response_or_page_shows_an_item_of_the_hidden_split_with_its_label(served, trained, version):
    client, _ = served
    template = client.get('/score/template.csv', params={'version': version}).text.splitlines()[1:]
    items = [line[:-1] for line in template]
    answers = np.arange(len(items)) % 10  # many wrong, with confidences: every figure the report can draw
    data = csv_of(items, answers, np.linspace(0.5, 1, len(items)))
    r = submit(client, data, name=f'prober {version}', version=version, report='true')
    assert r.status_code == 200, r.text
    assert per_item_fields(r.json(), len(items)) == []  # every field: nothing per item, no item id
    texts = [
        r.text,
        client.get('/score', params={'version': version}).text,
        client.get('/score/submissions', params={'version': version}).text,
    ]
    assert not any(sha in t for sha in items for t in texts)


def test_a_name_belongs_to_its_first_submitter(served, split):
    client, _ = served
    items, y = split
    first = submit(client, csv_of(items, y), name='alice')
    assert first.status_code == 200 and first.json()['claim_token']
    token = first.json()['claim_token']
    for name, claim in [('alice', ''), ('Alice ', ''), ('ALICE', 'a-guess')]:
        r = errors_of(submit(client, csv_of(items, y), name=name, claim=claim), 403)
        assert "the name 'alice' was claimed" in r[0].lower() and 'claim token' in r[0]
    again = submit(client, csv_of(items, y), name='Alice', claim=token)
    assert (
        again.status_code == 200
        and again.json()['claim_token'] is None
        and again.json()['submission']['name'] == 'Alice'
    )
    assert [submit(client, csv_of(items, y)).json()['submission']['name'] for _ in range(2)] == ['anonymous'] * 2
    assert 'A name belongs to whoever submitted under it first' in client.get('/score').text
    board = client.get('/score/submissions').json()['submissions']
    assert sum(s['name'].lower() == 'alice' for s in board) == 2


def test_submissions_past_the_hourly_limit_get_429(limited, split):
    items, y = split
    for bad in (b'', b'item,label\nnope,1\n'):  # refused files tell nothing about the labels and do not count
        assert submit(limited, bad).status_code == 422
    first = submit(limited, csv_of(items, y), name='alice')
    token = first.json()['claim_token']
    answers = [first] + [submit(limited, csv_of(items, y), name='alice', claim=token) for _ in range(39)]
    codes = [r.status_code for r in answers]
    assert codes[:3] == [200] * 3 and set(codes[3:]) == {429}
    late = answers[-1]
    assert int(late.headers['Retry-After']) > 0 and '[score] submissions_per_hour' in late.json()['detail']
    assert 'accuracy' not in late.text  # nothing scored past the limit goes back
    assert len(limited.get('/score/submissions').json()['submissions']) == 3


def test_bad_files_are_refused_with_line_numbers(served, split):
    client, _ = served
    items, y = split
    before = len(client.get('/score/submissions').json()['submissions'])
    good = csv_of(items, y).decode().splitlines()
    lines = good[:3] + ['0123456789abcdef,3', good[1], good[4].split(',')[0] + ',12'] + good[5:]
    e = errors_of(submit(client, '\n'.join(lines).encode()))
    assert e[0].startswith("line 4: unknown item id '0123456789abcdef'")
    assert e[1].startswith('line 5: item') and 'is given twice (first on line 2)' in e[1]
    assert (
        e[2] == "line 6: label '12' is not a class: give a class name (0, 1, 2, 3, 4, 5, 6, 7, 8, 9) or its index 0-9"
    )
    assert e[3].startswith('1 of the 334 items') and 'have no line' in e[3]  # the item whose line was replaced
    assert errors_of(submit(client, '\n'.join(good[1:]).encode()))[0].startswith('line 1: no header')
    missing = errors_of(submit(client, '\n'.join(good[:-10]).encode()))
    assert missing == [
        f'10 of the 334 items of the test split of dataset version {get_version_id(client)} have no line '
        f'(the first: {items[-10]}): give one line per item'
    ]
    assert errors_of(submit(client, b'\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR'))[0].startswith('line 1: not CSV')
    assert errors_of(submit(client, b'item,label\n' + b'\x00' * 10))[0] == 'line 2: not CSV: the file holds binary data'
    assert errors_of(submit(client, b''))[0].startswith('the file is empty')
    assert errors_of(submit(client, b',\r\n , ,\n'))[0].startswith(
        'the file holds no values'
    )  # found by schemathesis: was a 500
    big = b'item,label\n' + b'x' * (MAX_BYTES + 1)
    assert errors_of(submit(client, big), 413)[0].startswith(f'the file is {len(big):,} bytes; at most {MAX_BYTES:,}')
    assert (
        submit(client, b'y' * 5_000_000).status_code == 413
    )  # over [serving] max_body_bytes: refused before it is read
    assert errors_of(submit(client, csv_of(items, y), version='no-such-version'), 404)[0].startswith(
        "no dataset version 'no-such-version'"
    )
    r = client.post('/score/submissions', data={'version': 'benchmark'})  # no file at all
    assert r.status_code == 422 and 'file' in r.json()['detail']
    assert client.get('/score', params={'version': 'nope'}).status_code == 404
    assert len(client.get('/score/submissions').json()['submissions']) == before  # nothing refused joined the board


def get_version_id(client) -> str:
    return client.get('/score/submissions').json()['dataset_version']


def test_a_service_like_version_is_scored_by_slice(served, trained):
    client, _ = served
    settings = trained[0]
    template = client.get('/score/template.csv', params={'version': 'service-like'})
    assert template.status_code == 200 and template.headers['content-type'].startswith('text/csv')
    lines = template.text.splitlines()
    assert lines[0] == 'item,label' and all(line.endswith(',') for line in lines[1:])
    vid = template.headers['content-disposition'].split('predictions-')[1].split('.csv')[0]
    v = get_version(Store(settings.store_url), vid)
    assert v['meta']['service_like'] and len(lines) == len(v['examples']) + 1
    labels = {e.sha256: e.label for e in v['examples']}
    answers = [
        f'{line[:-1]},{labels[line[:-1]] if meta["polarity"] == "dark-on-light" else (labels[line[:-1]] + 1) % 10}'
        for line, meta in zip(lines[1:], v['meta']['slices'])
    ]  # right on one polarity only
    r = submit(client, ('item,label\n' + '\n'.join(answers)).encode(), version='service-like', name='half')
    assert r.status_code == 200, r.text
    sl = r.json()['slices']
    assert sl['polarity'] == {
        'dark-on-light': {'n': len(lines[1:]) // 2, 'accuracy': 1.0},
        'light-on-dark': {'n': len(lines[1:]) // 2, 'accuracy': 0.0},
    }
    assert set(sl) == {'set', 'source', 'thickness', 'polarity'} and sl['set']['service-like']['accuracy'] == 0.5
    assert r.json()['submission']['label'] == 'service-like'


def test_the_reports_index_and_reports_are_served(served):
    client, tmp = served
    run = tmp / 'reports' / 'runs' / '20260101-000000-evaluate-abcdef'
    run.mkdir(parents=True)
    (run / 'run.json').write_text(
        json.dumps(
            dict(
                run_id=run.name,
                job='evaluate',
                state='failed',
                report='evaluate.html',
                error='boom',
                started='2026-01-01T00:00:00Z',
            )
        )
    )
    (run / 'evaluate.html').write_text('<h1>the report</h1>')
    from mlproj.jobs import _write_index_at

    _write_index_at(tmp / 'reports')
    page = client.get('/reports/')
    assert page.status_code == 200 and 'class="state failed"' in page.text and run.name in page.text
    assert client.get('/reports', follow_redirects=True).status_code == 200  # redirected to /reports/
    assert client.get(f'/reports/runs/{run.name}/evaluate.html').text == '<h1>the report</h1>'
    for bad in (
        f'/reports/runs/{run.name}/run.json',
        '/reports/runs/..%2F..%2Fetc/passwd.html',
        f'/reports/runs/{run.name}/nope.html',
        '/reports/runs/.hidden/x.html',
    ):
        assert client.get(bad).status_code == 404, bad


def test_an_hourly_limit_refills_over_the_hour():
    from deploy.limits import RateLimit

    limit = RateLimit(3, seconds=3600)  # the corrections limiter's code, with an hour for its period
    assert [limit.wait('a', now=0) for _ in range(3)] == [0, 0, 0]
    assert limit.wait('a', now=0) == pytest.approx(1200) and limit.wait('b', now=0) == 0  # each client its own bucket
    assert limit.wait('a', now=1199) > 0 and limit.wait('a', now=1200) == 0
