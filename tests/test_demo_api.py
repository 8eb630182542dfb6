"""The demo page and POST /corrections without a browser: the page and its assets, good and bad corrections, where a
correction goes (raw store with provenance, the service-like set, the feedback project), and the on/off setting."""

import re

import numpy as np
import pytest
from conftest import make_settings
from fastapi.testclient import TestClient

from deploy.app import create_app
from mlproj.glyphs import draw_strokes, encode_png
from mlproj.items import get_item, item_provenance
from mlproj.servicelike import build_service_like, list_corrections, load_service_like
from mlproj.store import Store
from mlproj.task import load_task
from mlproj.versions import get_version

UA = {'user-agent': 'pytest-demo/1.0 (a phone, say)'}


def drawing(digit: int = 7, seed: int = 0) -> bytes:
    "A digit drawn as the demo page draws it: dark strokes on a white 280x280 canvas, as PNG."
    return encode_png(draw_strokes(digit, np.random.default_rng(seed), 0.07, 280))


@pytest.fixture
def served(trained, tmp_path):
    "(client, settings): the fixture's model served from a store of this test's own (corrections land there)."
    import shutil
    from pathlib import Path

    shutil.copytree(Path(trained[0].store_url) / 'models', tmp_path / 'store' / 'models')
    s = make_settings(tmp_path, MLPROJ_ANNOTATE_DATABASE=f'sqlite:///{tmp_path}/annotate.sqlite')
    with TestClient(create_app(s)) as c:
        yield c, s


def detail(r, status: int) -> str:
    assert r.status_code == status, r.text
    return r.json()['detail']


def test_page_at_root_loads_only_same_origin_assets(served):
    c, _ = served
    r = c.get('/')
    assert r.status_code == 200 and r.headers['content-type'].startswith('text/html')
    html = r.text
    assert 'name="viewport"' in html and '<canvas id="pad"' in html
    assert "default-src 'self'" in r.headers['content-security-policy']
    refs = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert refs and not [u for u in refs if re.match(r'^(https?:)?//', u)], refs  # nothing from another origin
    for ref in ('static/demo.js', 'static/demo.css'):
        assert ref in refs
        a = c.get('/' + ref)
        assert a.status_code == 200 and a.content, ref
        assert not re.search(r'https?://', a.text), ref  # no CDN in the assets either
    assert 'pointerdown' in c.get('/static/demo.js').text  # mouse, touch and pen through Pointer Events
    assert len(re.findall(r'data-label="\d"', html)) == 10  # "it was a _": one button per digit


def test_correction_is_kept_as_a_raw_item_with_label_and_provenance(served):
    c, s = served
    png = drawing(7)
    r = c.post('/corrections', files={'file': ('d.png', png, 'image/png')}, data={'label': '7'}, headers=UA)
    assert r.status_code == 201, r.text
    body = r.json()
    store = Store(s.store_url)
    assert get_item(store, body['sha256']) == png
    prov = item_provenance(store, body['sha256'])
    assert prov['source'] == 'demo correction' and prov['media_type'] == 'image/png' and prov['collected']
    h = prov['headers']
    assert h['user_agent'] == UA['user-agent'] and h['label'] == 7 and h['model_version'] == 1 == body['model_version']
    assert h['model_answer'] == body['model_answer'] and len(h['probabilities']) == 10
    assert [(x['sha256'], x['label'], x['source']) for x in list_corrections(store)] == [(body['sha256'], 7, 'demo')]
    assert body['feedback_project'] is None  # [annotate] feedback is off by default


def test_corrected_drawings_join_the_service_like_set_and_never_a_training_split(served):
    c, s = served
    shas = [
        c.post('/corrections', files={'file': ('d.png', drawing(d, 3), 'image/png')}, data={'label': str(d)}).json()[
            'sha256'
        ]
        for d in (1, 4)
    ]
    store = Store(s.store_url)
    vid = build_service_like(store, load_task('digits'), seed=1, per_class=1)
    v = get_version(store, vid)
    mine = {e.sha256: e for e in v['examples'] if e.sha256 in shas}
    assert {e.label for e in mine.values()} == {1, 4} and {e.split for e in v['examples']} == {'test'}
    X, y, slices = load_service_like(store, vid)
    assert sum(sl['source'] == 'demo' for sl in slices) == 2 and X.shape[1:] == (8, 8)


# begin-only-with: annotation
def test_corrections_flow_into_the_feedback_project_when_feedback_is_on_and_never_into_its_export(trained, tmp_path):
    import shutil
    from pathlib import Path

    from mlproj import annotate as A

    shutil.copytree(Path(trained[0].store_url) / 'models', tmp_path / 'store' / 'models')
    url = f'sqlite:///{tmp_path}/annotate.sqlite'
    s = make_settings(tmp_path, MLPROJ_ANNOTATE_DATABASE=url, MLPROJ_ANNOTATE_FEEDBACK='true')
    with TestClient(create_app(s)) as c:
        r = c.post('/corrections', files={'file': ('d.png', drawing(3), 'image/png')}, data={'label': '3'})
    assert r.status_code == 201 and r.json()['feedback_project'] == 'feedback', r.text
    from sqlalchemy import select

    from mlproj.db import Item

    db = A.open_db(s, url)
    try:
        p = A.get_project(db, 'feedback')
        with db.read() as sess:
            assert sess.scalars(select(Item.sha256).where(Item.project_id == p.id)).all() == [r.json()['sha256']]
        vid, counts = A.export_consensus(db, s, 'feedback')  # a version training could use never holds it
        assert counts['evaluation_only'] == 1 and counts['examples'] == 0
    finally:
        db.close()
        # end-only-with: annotation


@pytest.mark.parametrize(
    'files, data, status, says',
    [
        ({'file': ('d.png', drawing(), 'image/png')}, {}, 422, "no 'label'"),
        ({'file': ('d.png', drawing(), 'image/png')}, {'label': '10'}, 422, 'from 0 to 9'),
        ({'file': ('d.png', drawing(), 'image/png')}, {'label': '-1'}, 422, 'from 0 to 9'),
        ({'file': ('d.png', drawing(), 'image/png')}, {'label': 'seven'}, 422, 'from 0 to 9'),
        (None, {'label': '7'}, 415, 'multipart/form-data'),
        ({'other': ('d.png', drawing(), 'image/png')}, {'label': '7'}, 422, "unexpected field 'other'"),
        ({'file': ('d.txt', b'this is not a picture of anything', 'text/plain')}, {'label': '7'}, 422, 'not an image'),
        ({'file': ('d.png', b'', 'image/png')}, {'label': '7'}, 422, 'empty'),
        ({'file': ('d.png', encode_png(np.zeros((40, 40), np.float32)), 'image/png')}, {'label': '7'}, 422, 'file 1'),
    ],
)
def test_bad_corrections_get_a_4xx_saying_what_to_fix(served, files, data, status, says):
    c, s = served
    r = c.post('/corrections', files=files, data=data) if files else c.post('/corrections', data=data)
    assert says in detail(r, status)
    assert list_corrections(Store(s.store_url)) == []  # nothing kept


def test_a_correction_larger_than_the_limit_is_refused_with_413(trained, tmp_path):
    s = make_settings(tmp_path, MLPROJ_PATHS_STORE=trained[0].store_url, MLPROJ_SERVING_MAX_CORRECTION_BYTES='2000')
    with TestClient(create_app(s)) as c:
        r = c.post(
            '/corrections', files={'file': ('d.png', drawing() + b'\0' * 3000, 'image/png')}, data={'label': '7'}
        )
    assert 'max_correction_bytes' in detail(r, 413)


def test_corrections_per_minute_bound_each_client_and_keep_nothing_past_it(trained, tmp_path):
    s = make_settings(tmp_path, MLPROJ_PATHS_STORE=str(tmp_path / 'store'), MLPROJ_SERVING_CORRECTIONS_PER_MINUTE='2')
    with TestClient(create_app(s)) as c:
        post = lambda seed: c.post(
            '/corrections', files={'file': ('d.png', drawing(7, seed), 'image/png')}, data={'label': '7'}
        )
        assert [post(i).status_code for i in range(2)] == [201, 201]
        r = post(2)
        assert 'corrections_per_minute' in detail(r, 429) and 25 <= int(r.headers['retry-after']) <= 30, r.headers
        assert len(list_corrections(Store(s.store_url))) == 2  # the refused one is not kept


def test_rate_limit_refills_per_client_and_forgets_the_least_recent():
    from deploy.limits import RateLimit

    limit = RateLimit(3, clients=2)
    assert [limit.wait('a', now=0) for _ in range(3)] == [0, 0, 0]
    assert limit.wait('a', now=0) == 20  # a token comes back every 60/3 s
    assert limit.wait('b', now=0) == 0  # another client has its own
    assert limit.wait('a', now=10) == 10 and limit.wait('a', now=20) == 0 and limit.wait('a', now=20) > 0
    limit.wait('c', now=21)  # a third client: the least recent (b) is forgotten, a is kept
    assert set(limit._buckets) == {'a', 'c'}
    assert all(RateLimit(0).wait('a', now=0) == 0 for _ in range(100))  # 0: no limit


def test_corrections_off_hides_the_buttons_and_refuses_with_403(trained, tmp_path):
    s = make_settings(tmp_path, MLPROJ_PATHS_STORE=str(tmp_path / 'store'), MLPROJ_SERVING_CORRECTIONS='false')
    with TestClient(create_app(s)) as c:
        assert 'data-label=' not in c.get('/').text
        r = c.post('/corrections', files={'file': ('d.png', drawing(), 'image/png')}, data={'label': '7'})
    assert '[serving] corrections = false' in detail(r, 403)


def test_openapi_documents_the_correction_endpoint(served):
    op = served[0].get('/openapi.json').json()['paths']['/corrections']['post']
    schema = op['requestBody']['content']['multipart/form-data']['schema']
    assert schema['required'] == ['file', 'label'] and schema['properties']['label']['maximum'] == 9
    assert {'201', '403', '413', '415', '422'} <= set(op['responses'])
    assert '/' not in served[0].get('/openapi.json').json()['paths']  # the page is not an API operation
