"""The annotation tool: assignment under concurrency over real HTTP, leases, 403s, agreement figures, consensus export.

Each database test runs on SQLite and, when MLPROJ_TEST_DATABASE_URL is set, on PostgreSQL (a database of its own,
created and dropped here)."""

import importlib.util
import os
import time
import uuid

import httpx
import pytest
from conftest import ROOT, make_settings

from mlproj import agreement as G
from mlproj import annotate as A

spec = importlib.util.spec_from_file_location('annotate_writes', ROOT / 'bench' / 'annotate_writes.py')
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)
PG = os.environ.get('MLPROJ_TEST_DATABASE_URL')


@pytest.fixture(params=['sqlite', 'postgresql'])
def db_url(request, tmp_path):
    if request.param == 'sqlite':
        yield f'sqlite:///{tmp_path}/annotate.sqlite'
    elif not PG:
        pytest.skip('MLPROJ_TEST_DATABASE_URL is not set (.ci/run sets it when PostgreSQL answers on 127.0.0.1:5432)')
    else:
        with bench.pg_database(PG, f'mlproj_test_annotate_{os.getpid()}_{uuid.uuid4().hex[:6]}') as url:
            yield url


@pytest.fixture
def settings(tmp_path, db_url):
    return make_settings(tmp_path, MLPROJ_ANNOTATE_DATABASE=db_url)


def _check_invariants(db, overlap):
    "No item with more than k slots or labels, none twice to one person, counters equal to the rows."
    from sqlalchemy import func, select

    from mlproj.db import Assignment, Item

    with db.read() as s:
        per_item = dict(
            s.execute(
                select(Assignment.item_id, func.count())
                .where(Assignment.slot.is_not(None))
                .group_by(Assignment.item_id)
            ).all()
        )
        done = dict(
            s.execute(
                select(Assignment.item_id, func.count()).where(Assignment.state == 'done').group_by(Assignment.item_id)
            ).all()
        )
        pairs = s.execute(
            select(Assignment.item_id, Assignment.person_id, func.count())
            .group_by(Assignment.item_id, Assignment.person_id)
            .having(func.count() > 1)
        ).all()
        items = s.scalars(select(Item)).all()
    assert max(per_item.values(), default=0) <= overlap and max(done.values(), default=0) <= overlap
    assert pairs == []
    assert all(i.taken == per_item.get(i.id, 0) and i.done == done.get(i.id, 0) for i in items)


def _run_concurrency(settings, db_url, seconds, n_items):
    overlap, lease = 3, 1
    tokens = bench.make_project(
        settings, db_url, n_items=n_items, n_people=50, overlap=overlap, lease_seconds=lease, name='conc'
    )
    leavers = tuple(sorted(tokens)[:5])  # close their tab holding a lease
    with bench.serve(settings, db_url) as (url, _):
        out = bench.run_annotators(url, tokens, seconds, abandon=leavers)
        assert out['errors'] == [] and len(out['abandoned']) == 5
        time.sleep(lease + 0.5)
        late = httpx.post(
            f'{url}/api/assignments/{out["abandoned"][0][1]}',
            json={'label': 1, 'item_id': out['abandoned'][0][2]},
            headers={'authorization': f'Bearer {tokens[leavers[0]]}'},
        )
        assert late.status_code in (200, 409)  # kept if a slot was still free, else refused: never silently lost
        if late.status_code == 200:
            out['acked'].append((leavers[0], late.json()['saved']['id'], out['abandoned'][0][2], 1))
        r = httpx.get(
            f'{url}/api/next', headers={'authorization': f'Bearer {tokens[leavers[1]]}'}
        )  # sweeps expired leases
        assert r.status_code == 200
    db = A.open_db(settings, db_url)
    try:
        from sqlalchemy import select

        from mlproj.db import Assignment, Person

        with db.read() as s:
            rows = s.execute(
                select(Assignment.id, Person.name, Assignment.item_id, Assignment.label)
                .join(Person, Person.id == Assignment.person_id)
                .where(Assignment.state.in_(['done', 'skipped']))
            ).all()
            expired = s.execute(
                select(Assignment.id).where(Assignment.id.in_([a[1] for a in out['abandoned'][2:]]))
            ).all()
        stored = {r.id: (r.name, r.item_id, r.label) for r in rows}
        acked = {aid: (name, item, label) for name, aid, item, label in out['acked']}
        assert len(acked) == len(out['acked'])  # no assignment acknowledged twice
        lost = {k: v for k, v in acked.items() if stored.get(k) != v}
        extra = {k: v for k, v in stored.items() if k not in acked}
        assert (len(lost), len(extra)) == (0, 0), (
            f'lost or changed: {list(lost.items())[:5]}; not acknowledged: {list(extra.items())[:5]}'
        )
        assert expired == []  # the abandoned leases ran out and were swept
        _check_invariants(db, overlap)
    finally:
        db.close()
    return out


def test_50_concurrent_annotators_lose_nothing_and_never_exceed_k(settings, db_url):
    out = _run_concurrency(settings, db_url, seconds=3, n_items=100)
    assert len(out['acked']) > 50


@pytest.mark.full
def test_50_concurrent_annotators_for_a_minute(settings, db_url):
    out = _run_concurrency(settings, db_url, seconds=60, n_items=3000)
    assert len(out['acked']) > 500


def test_a_token_cannot_read_or_write_anothers_work(settings, db_url):
    tokens = bench.make_project(settings, db_url, n_items=6, n_people=2, overlap=1, name='p1')
    other = bench.make_project(settings, db_url, n_items=2, n_people=1, overlap=1, name='p2')
    db = A.open_db(settings, db_url)
    rev = A.add_person(db, 'p2', 'rev', 'reviewer')
    db.close()
    with bench.serve(settings, db_url) as (url, _):
        c = {
            n: httpx.Client(base_url=url, headers={'authorization': f'Bearer {t}'})
            for n, t in {**tokens, 'x': other['a00'], 'rev': rev}.items()
        }
        mine = c['a00'].get('/api/next').json()['next']
        img = c['a00'].get(mine['image'])
        assert (
            img.status_code == 200 and 'sandbox' in img.headers['content-security-policy']
        )  # opened alone, an item runs nothing
        assert c['a01'].get(f'/api/assignments/{mine["id"]}').status_code == 403
        r = c['a01'].post(f'/api/assignments/{mine["id"]}', json={'label': 1})
        assert r.status_code == 403 and 'not yours' in r.json()['detail']
        assert c['a01'].get(mine['image']).status_code == 403  # not handed to a01: blind
        assert c['x'].get(mine['image']).status_code == 403  # another project
        assert c['rev'].get(mine['image']).status_code == 403  # a reviewer of another project
        assert c['rev'].post(f'/api/review/{mine["item_id"]}', json={'label': 1}).status_code == 403
        assert c['a00'].get('/api/agreement').status_code == 403  # annotators do not see others' labels
        assert c['a00'].get('/review').status_code == 403
        r = c['rev'].get('/review')
        assert (
            r.status_code == 200
            and 'Adjudication: 0 items without a majority' in r.text
            and "Krippendorff's alpha" in r.text
        )
        assert httpx.get(f'{url}/api/next').status_code == 401
        assert httpx.get(f'{url}/api/next', headers={'authorization': 'Bearer nope'}).status_code == 401
        r = c['a00'].post(f'/api/assignments/{mine["id"]}', json={'label': 12})
        assert r.status_code == 409 and 'not one of the 10 labels of project' in r.json()['detail']  # the project's
        r = c['a00'].post(f'/api/assignments/{mine["id"]}', json={'label': 1000})  # past any project's labels
        assert r.status_code == 422 and 'body.label: Input should be less than or equal to 999' in r.json()['detail']
        assert c['a00'].post(f'/api/assignments/{mine["id"]}', json={'label': 2}).status_code == 200
        assert c['a00'].get(f'/api/assignments/{mine["id"]}').json()['label'] == 2
        for x in c.values():
            x.close()


def test_an_answered_item_is_never_handed_back_nor_answered_again(settings, db_url):
    "Saves in flight are named in `exclude`; whatever arrives, a done assignment keeps its first answer (a retry of it is acknowledged)."
    tokens = bench.make_project(settings, db_url, n_items=6, n_people=1, overlap=1, name='again')
    with (
        bench.serve(settings, db_url) as (url, _),
        httpx.Client(base_url=url, headers={'authorization': f'Bearer {tokens["a00"]}'}) as c,
    ):
        a = c.get('/api/next').json()['next']
        b = c.get('/api/next', params={'exclude': a['id']}).json()['next']
        # the page answered a, then b before a's save came back: a's save names b (held) and the unsaved answer to it
        r = c.post(
            f'/api/assignments/{a["id"]}', json={'label': 1, 'item_id': a['item_id'], 'exclude': [b['id']]}
        ).json()
        assert r['next']['id'] not in (a['id'], b['id'])
        assert c.get('/api/next', params={'exclude': f'{r["next"]["id"]},{b["id"]}'}).json()['next']['id'] not in (
            a['id'],
            b['id'],
        )
        assert c.post(f'/api/assignments/{b["id"]}', json={'label': 2, 'item_id': b['item_id']}).status_code == 200
        again = c.post(f'/api/assignments/{b["id"]}', json={'label': 5, 'item_id': b['item_id']})
        assert again.status_code == 409 and 'undo it to change your answer' in again.json()['detail']
        assert (
            c.post(f'/api/assignments/{b["id"]}', json={'label': 2, 'item_id': b['item_id']}).status_code == 200
        )  # a retry
        assert c.post(f'/api/assignments/{b["id"]}', json={'label': None, 'item_id': b['item_id']}).status_code == 409
        assert [c.get(f'/api/assignments/{x["id"]}').json()['label'] for x in (a, b)] == [1, 2]
        held = set()
        while (n := c.get('/api/next', params={'exclude': ','.join(map(str, held))}).json()['next']) is not None:
            assert n['item_id'] not in (a['item_id'], b['item_id'])
            held.add(n['id'])


def test_agreement_figures_match_hand_computed_cases():
    import numpy as np
    from sklearn.metrics import cohen_kappa_score

    assert round(G.cohen_kappa([1] * 25 + [0] * 25, [1] * 20 + [0] * 5 + [1] * 10 + [0] * 15), 10) == 0.4
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 4, 200), rng.integers(0, 4, 200)
    b[:120] = a[:120]
    assert abs(G.cohen_kappa(a, b) - cohen_kappa_score(a, b)) < 1e-12
    assert G.cohen_kappa([2, 2, 2], [2, 2, 2]) == 1.0
    # two annotators on three items: (0,0), (1,1), (0,1): p_o = 2/3, p_e = (2/3)(1/3) + (1/3)(2/3) = 4/9, kappa = 0.4
    assert round(G.cohen_kappa([0, 1, 0], [0, 1, 1]), 10) == 0.4
    # Fleiss: 3 items, 3 raters, 2 categories: rows (3,0), (0,3), (2,1)
    # P_i = 1, 1, 1/3: mean 7/9; p = (5/9, 4/9): P_e = 41/81; kappa = (63/81 - 41/81) / (40/81) = 22/40 = 0.55
    assert round(G.fleiss_kappa([[3, 0], [0, 3], [2, 1]]), 10) == 0.55
    # Krippendorff's alpha with every item fully rated equals Fleiss' kappa corrected for sample size (nominal, 2 raters: Scott's pi * ...)
    assert round(G.krippendorff_alpha([[0, 0], [0, 1], [1, 1], [1, 1]]), 4) == 0.5333
    assert G.krippendorff_alpha([[1, 1], [2, 2], [3, 3]]) == 1.0


def test_consensus_becomes_a_child_dataset_version_with_the_votes(settings, db_url):
    import numpy as np

    from mlproj.digits import UCI_MEDIA_TYPE, encode_counts
    from mlproj.items import Provenance, put_item
    from mlproj.store import Store
    from mlproj.versions import Example, get_version, put_version

    store = Store(settings.store_url)
    shas = [put_item(store, encode_counts(np.full((8, 8), i)), Provenance('t', UCI_MEDIA_TYPE)) for i in range(4)]
    parent = put_version(store, [Example(shas[0], 0, 'train'), Example(shas[3], 5, 'val')], label_source='benchmark')
    db = A.open_db(settings, db_url)
    try:
        A.create_project(
            db, 'c', [str(d) for d in range(10)], [(h, UCI_MEDIA_TYPE) for h in shas], overlap=2, source=parent
        )
        people = [A.person_for_token(db, A.add_person(db, 'c', n)) for n in ('a', 'b')]
        reviewer = A.person_for_token(db, A.add_person(db, 'c', 'r', 'reviewer'))
        plan = {shas[0]: (7, 7), shas[1]: (1, 1), shas[2]: (2, 3)}  # relabel, agree, tie; the 4th stays open
        from sqlalchemy import select

        from mlproj.db import Item

        with db.read() as s:
            by_id = {i.id: i.sha256 for i in s.scalars(select(Item))}
        for k, p in enumerate(people):
            for _ in range(4):
                a = A.next_assignment(db, p)
                sha = by_id[a['item_id']]
                A.answer(db, p, a['id'], plan[sha][k] if sha in plan else None)
        tie = A.to_review(db, 'c')
        assert [by_id[t['item_id']] for t in tie] == [shas[2]] and tie[0]['votes'] == [2, 3]
        A.adjudicate(db, reviewer, tie[0]['item_id'], 3)
        vid, counts = A.export_consensus(db, settings, 'c')
        v = get_version(store, vid)
        assert v['parent'] == parent and v['label_source'] == 'consensus'
        assert {e.sha256: (e.label, e.source) for e in v['examples']} == {
            shas[0]: (7, 'consensus'),
            shas[1]: (1, 'consensus'),
            shas[2]: (3, 'consensus'),
            shas[3]: (5, 'benchmark'),
        }  # the open item keeps its parent's label
        assert next(e for e in v['examples'] if e.sha256 == shas[0]).split == 'train'  # an item keeps its split
        assert v['meta']['votes'][shas[2]] == {'label': 3, 'by': 'review', 'votes': {'a': 2, 'b': 3}}
        assert counts == dict(majority=2, review=1, open=1, evaluation_only=0, examples=4, inherited=1)
        ag = G.agreement(db, 'c')
        assert ag['pairwise'][0]['items'] == 3 and ag['annotators']['a']['labels'] == 3
    finally:
        db.close()


def test_annotate_commands_create_add_and_export(tmp_path):
    import subprocess

    import numpy as np

    from mlproj.digits import UCI_MEDIA_TYPE, encode_counts
    from mlproj.items import Provenance, put_item
    from mlproj.store import Store
    from mlproj.versions import Example, put_version

    s = make_settings(tmp_path)
    store = Store(s.store_url)
    shas = [put_item(store, encode_counts(np.full((8, 8), i)), Provenance('t', UCI_MEDIA_TYPE)) for i in range(3)]
    vid = put_version(store, [Example(h, i, 'train') for i, h in enumerate(shas)], label_source='benchmark')
    env = {
        'PATH': '/usr/bin:/bin',
        'MLPROJ_TASK_NAME': 'digits',  # the fixture's models and the assertions are the digits' (any project task)
        'MLPROJ_PATHS_STORE': str(tmp_path / 'store'),
        'MLPROJ_ANNOTATE_DATABASE': f'sqlite:///{tmp_path}/a.sqlite',
        'MLPROJ_ANNOTATE_BASE_URL': 'https://label.example',
    }
    run = lambda *a: subprocess.run(
        [str(ROOT / '.venv' / 'bin' / 'mlproj'), 'annotate', *a], capture_output=True, text=True, cwd=ROOT, env=env
    )
    r = run('create', 'p', '--version', vid, '--overlap', '1')
    assert r.returncode == 0 and '3 items' in r.stdout
    r = run('add', 'p', 'ann', 'bea')
    assert r.returncode == 0 and r.stdout.count('https://label.example/login/') == 2
    r = run('create', 'p', '--version', vid)
    assert r.returncode == 1 and r.stderr.count('\n') == 1 and 'already exists' in r.stderr
    r = run('export', 'p')
    assert (
        r.returncode == 0
        and '3 examples' in r.stdout
        and '3 kept from the parent' in r.stdout
        and '3 items still open' in r.stdout
    )


def test_unsure_production_inputs_flow_into_the_feedback_project(trained, tmp_path):
    import shutil

    from fastapi.testclient import TestClient

    from deploy.app import create_app
    from mlproj.items import item_provenance
    from mlproj.store import Store

    s0, _, _ = trained
    shutil.copytree(s0.store_url, tmp_path / 'store')
    env = dict(MLPROJ_ANNOTATE_DATABASE=f'sqlite:///{tmp_path}/a.sqlite')
    pixels = {'pixels': [[0] * 64, [16] * 64]}
    with TestClient(create_app(make_settings(tmp_path, **env))) as c:  # off by default: nothing kept
        assert c.post('/predict', json=pixels).status_code == 200
    db = A.open_db(make_settings(tmp_path, **env))
    with pytest.raises(A.NotFound):
        A.get_project(db, 'feedback')
    on = make_settings(
        tmp_path, MLPROJ_ANNOTATE_FEEDBACK='true', MLPROJ_ANNOTATE_FEEDBACK_MARGIN='1.01', **env
    )  # every input is unsure
    with TestClient(create_app(on)) as c:
        assert c.post('/predict', json=pixels).status_code == 200
        assert c.post('/predict', json=pixels).status_code == 200  # the same inputs again: stored once
    from sqlalchemy import select

    from mlproj.db import Item

    p = A.get_project(db, 'feedback')
    with db.read() as sess:
        shas = sess.scalars(select(Item.sha256).where(Item.project_id == p.id)).all()
    assert len(shas) == 2
    prov = item_provenance(Store(on.store_url), shas[0])
    assert prov['source'] == 'service:predict' and len(prov['headers']['model_answer']) == 10
    db.close()


def test_a_browser_without_a_valid_link_gets_the_login_page_and_a_script_gets_json_401(settings, db_url):
    "People see a page that says how to get in (and can paste their link); API clients keep their JSON 401."
    from fastapi.testclient import TestClient

    from deploy.annotate.app import create_app

    tokens = bench.make_project(settings, db_url, n_items=2, n_people=1, overlap=1, name='doors')
    html, api = {'accept': 'text/html,application/xhtml+xml,*/*;q=0.8'}, {'accept': 'application/json'}
    with TestClient(create_app(settings, db_url), follow_redirects=False) as c:
        for path in ('/', '/review', '/login/not-a-token'):
            page = c.get(path, headers=html)
            assert page.status_code == 401 and page.headers['content-type'].startswith('text/html'), path
            assert '<form method="post" action="/login">' in page.text and "Ask the project's admin" in page.text
            assert "script-src 'self'" in page.headers['content-security-policy']
            r = c.get(path, headers=api)
            assert r.status_code == 401 and r.headers['content-type'] == 'application/json', path
            assert 'log in' in r.json()['detail'] or 'not valid' in r.json()['detail']
        assert 'not valid' not in c.get('/', headers=html).text  # no link at all: no error, just the way in
        assert 'This link is not valid' in c.get('/login/not-a-token', headers=html).text
        assert 'This link is not valid' in c.post('/login', data={'link': 'http://x/login/nope'}).text
        r = c.post(
            '/login', data={'link': f'  http://elsewhere:8000/login/{tokens["a00"]}  '}
        )  # pasted, spaces and all
        assert r.status_code == 303 and r.headers['location'] == '/' and tokens['a00'] in r.headers['set-cookie']
        assert c.get('/', headers=html).status_code == 200  # the cookie the form set logs in
        assert c.get('/review', headers=html).status_code == 403  # an annotator: a page saying where to go instead
        assert 'Go to your labelling page' in c.get('/review', headers=html).text
        assert c.get('/review', headers=api).json()['detail'] == 'the review page is for reviewers'
        c.cookies.clear()
        c.cookies.set('mlproj_annotate', 'stale')
        page = c.get('/', headers=html)
        assert page.status_code == 401 and 'This link is not valid' in page.text
        assert 'mlproj_annotate=""' in page.headers['set-cookie']  # the stale cookie is dropped
        shared = c.get('/static/site.css')  # the look the demo and scoring pages share
        assert shared.status_code == 200 and shared.content == (ROOT / 'mlproj' / 'templates' / 'site.css').read_bytes()
