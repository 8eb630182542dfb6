"""The scoring tool over real HTTP (uvicorn): a predictions CSV scored against a dataset version's test split, the
report, the leaderboard in SQLite, bad files refused with line numbers (never a 500); and the reports index served."""
import json

import httpx
import numpy as np
import pytest

from conftest import SHORT_RUN_SERVICE_LIKE
from mlproj.data import split_labels
from mlproj.evaluate import split_items
from mlproj.score import MAX_BYTES
from mlproj.store import Store
from mlproj.versions import get_version
from conftest import uvicorn_server
from test_api import server_env


@pytest.fixture(scope='module')
def served(trained, tmp_path_factory):
    "uvicorn serving the fixture's store, with the reports (and the leaderboard) in a folder of this module."
    tmp = tmp_path_factory.mktemp('score')
    env = server_env(trained, tmp, MLPROJ_MODEL='1', **SHORT_RUN_SERVICE_LIKE)
    with uvicorn_server(env) as srv:
        with httpx.Client(base_url=srv.url, timeout=120) as client: yield client, tmp


@pytest.fixture(scope='module')
def split(trained):
    "The benchmark's test split: item ids and labels."
    settings, _, ev = trained
    st = Store(settings.store_url)
    return split_items(st, ev['dataset_version'], 'test'), split_labels(st, ev['dataset_version'], 'test')


def csv_of(items, labels, confidence=None, header='item,label') -> bytes:
    rows = [f'{i},{l}' + ('' if confidence is None else f',{c}') for i, l, c in
            zip(items, labels, confidence if confidence is not None else [None]*len(items))]
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
    wrong = np.where(np.arange(len(y)) % 5 == 0, (y + 1) % 10, y) # one answer in five wrong
    r = submit(client, csv_of(items, wrong, np.full(len(y), 0.95)), name='team fives', version='benchmark', report='true')
    assert r.status_code == 200, r.text
    body = r.json()
    m, s = body['metrics'], body['submission']
    assert m['accuracy'] == pytest.approx(np.mean(wrong == y)) and s['dataset_version'] == vid and s['rank'] >= 1
    assert m['ece'] == pytest.approx(abs(0.95 - m['accuracy']), abs=1e-6) and len(m['reliability']) == 1
    assert len(m['mistakes']) == 12 and m['mistakes'][0]['label'] != m['mistakes'][0]['predicted']
    page = body['report_html']
    for title in ('Summary', 'Confusion matrices', 'Calibration', 'Accuracy by slice', 'Most confident mistakes'):
        assert f'<h2>{title}</h2>' in page
    assert page.count('<img class="figure"') >= 4
    # a perfect file by the id prefix of the version, without confidences: first place; no calibration for it
    r = submit(client, csv_of(items, y), name='team perfect', version=vid[:8])
    assert r.status_code == 200, r.text
    assert r.json()['submission']['rank'] == 1 and r.json()['metrics'].get('ece') is None and r.json()['report_html'] is None
    board = client.get('/score/submissions', params={'version': 'benchmark'}).json()
    names = [x['name'] for x in board['submissions']]
    assert names.index('team perfect') < names.index('team fives') and board['submissions'][0]['rank'] == 1
    html = client.get('/score').text
    assert 'team perfect' in html and 'team fives' in html and vid in html


def test_bad_files_are_refused_with_line_numbers(served, split):
    client, _ = served
    items, y = split
    before = len(client.get('/score/submissions').json()['submissions'])
    good = csv_of(items, y).decode().splitlines()
    lines = good[:3] + ['0123456789abcdef,3', good[1], good[4].split(',')[0] + ',12'] + good[5:]
    e = errors_of(submit(client, '\n'.join(lines).encode()))
    assert e[0].startswith("line 4: unknown item id '0123456789abcdef'")
    assert e[1].startswith('line 5: item') and 'is given twice (first on line 2)' in e[1]
    assert e[2] == "line 6: label '12' is not in the label set 0-9"
    assert e[3].startswith('1 of the 334 items') and 'have no line' in e[3] # the item whose line was replaced
    assert errors_of(submit(client, '\n'.join(good[1:]).encode()))[0].startswith('line 1: no header')
    missing = errors_of(submit(client, '\n'.join(good[:-10]).encode()))
    assert missing == [f'10 of the 334 items of the test split of dataset version {get_version_id(client)} have no line '
                       f'(the first: {items[-10]}): give one line per item']
    assert errors_of(submit(client, b'\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR'))[0].startswith('line 1: not CSV')
    assert errors_of(submit(client, b'item,label\n' + b'\x00'*10))[0] == 'line 2: not CSV: the file holds binary data'
    assert errors_of(submit(client, b''))[0].startswith('the file is empty')
    assert errors_of(submit(client, b',\r\n , ,\n'))[0].startswith('the file holds no values') # found by schemathesis: was a 500
    big = b'item,label\n' + b'x'*(MAX_BYTES + 1)
    assert errors_of(submit(client, big), 413)[0].startswith(f'the file is {len(big):,} bytes; at most {MAX_BYTES:,}')
    assert submit(client, b'y'*5_000_000).status_code == 413 # over [serving] max_body_bytes: refused before it is read
    assert errors_of(submit(client, csv_of(items, y), version='no-such-version'), 404)[0].startswith("no dataset version 'no-such-version'")
    r = client.post('/score/submissions', data={'version': 'benchmark'}) # no file at all
    assert r.status_code == 422 and 'file' in r.json()['detail']
    assert client.get('/score', params={'version': 'nope'}).status_code == 404
    assert len(client.get('/score/submissions').json()['submissions']) == before # nothing refused joined the board


def get_version_id(client) -> str: return client.get('/score/submissions').json()['dataset_version']


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
    answers = [f"{line[:-1]},{labels[line[:-1]] if meta['polarity'] == 'dark-on-light' else (labels[line[:-1]] + 1) % 10}"
               for line, meta in zip(lines[1:], v['meta']['slices'])] # right on one polarity only
    r = submit(client, ('item,label\n' + '\n'.join(answers)).encode(), version='service-like', name='half')
    assert r.status_code == 200, r.text
    sl = r.json()['slices']
    assert sl['polarity'] == {'dark-on-light': {'n': len(lines[1:])//2, 'accuracy': 1.0}, 'light-on-dark': {'n': len(lines[1:])//2, 'accuracy': 0.0}}
    assert set(sl) == {'set', 'source', 'thickness', 'polarity'} and sl['set']['service-like']['accuracy'] == 0.5
    assert r.json()['submission']['label'] == 'service-like'


def test_the_reports_index_and_reports_are_served(served):
    client, tmp = served
    run = tmp / 'reports' / 'runs' / '20260101-000000-evaluate-abcdef'
    run.mkdir(parents=True)
    (run / 'run.json').write_text(json.dumps(dict(run_id=run.name, job='evaluate', state='failed', report='evaluate.html',
                                                  error='boom', started='2026-01-01T00:00:00Z')))
    (run / 'evaluate.html').write_text('<h1>the report</h1>')
    from mlproj.jobs import _write_index_at
    _write_index_at(tmp / 'reports')
    page = client.get('/reports/')
    assert page.status_code == 200 and 'class="state failed"' in page.text and run.name in page.text
    assert client.get('/reports', follow_redirects=True).status_code == 200 # redirected to /reports/
    assert client.get(f'/reports/runs/{run.name}/evaluate.html').text == '<h1>the report</h1>'
    for bad in (f'/reports/runs/{run.name}/run.json', '/reports/runs/..%2F..%2Fetc/passwd.html', f'/reports/runs/{run.name}/nope.html',
                '/reports/runs/.hidden/x.html'):
        assert client.get(bad).status_code == 404, bad
