"""The HTTP API (deploy/): predictions, readiness, the registry listing, limits and bad input.

Through TestClient (the app in this process, lifespan run) and over real HTTP (uvicorn in a subprocess)."""

import io
import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import anyio
import httpx
import numpy as np
import pytest
from conftest import ROOT, make_settings, serving_env, uvicorn_server
from fastapi.testclient import TestClient
from PIL import Image

from deploy.app import create_app
from deploy.limits import BodyLimit
from deploy.serving import ServedModel
from mlproj.data import load_split
from mlproj.digits_preprocess import render_counts
from mlproj.predict import Predictor
from mlproj.registry import open_registry
from mlproj.store import Store

N = 50  # test-set images used for accuracy checks
JSON = {'content-type': 'application/json'}


# ---------------------------------------------------------------- fixtures and helpers


@pytest.fixture(scope='module')
def digits(trained):
    "The first N test-split images as integer counts (N, 8, 8), and their labels."
    settings, _, evaluation = trained
    X, y = load_split(Store(settings.store_url), evaluation['dataset_version'], 'test')
    return X[:N].astype(int), y[:N]


@pytest.fixture(scope='module')
def client(trained):
    "The app serving the fixture's model (version 1), started."
    with TestClient(create_app(trained[0])) as c:
        yield c


def settings_on(trained, tmp, **env):
    "Settings that read the fixture's store, with other MLPROJ_* overrides."
    return make_settings(tmp, MLPROJ_PATHS_STORE=trained[0].store_url, **env)


def copy_models(trained, tmp: Path):
    "Settings on a store in `tmp` holding a copy of the fixture's models (free to change)."
    shutil.copytree(Path(trained[0].store_url) / 'models', tmp / 'store' / 'models')
    return make_settings(tmp)


def png(counts, side=160, margin=40, dark_on_light=False, fmt='PNG') -> bytes:
    "8x8 counts drawn as a large image, light ink on dark unless told (the drawing is mlproj's own, as the demo sends)."
    return render_counts(counts, size=side, margin=margin, dark_on_light=dark_on_light, fmt=fmt)


def labels(response) -> np.ndarray:
    assert response.status_code == 200, response.text
    return np.array([p['label'] for p in response.json()['predictions']])


def detail(response, status) -> str:
    "The detail of an error answer, after checking its status and that it is a plain message."
    assert response.status_code == status, response.text
    d = response.json()['detail']
    assert isinstance(d, str) and len(d) > 15
    return d


def uploads(images, field='files', names=None):
    names = names or [f'digit{i}.png' for i in range(len(images))]
    return [(field, (n, b, 'application/octet-stream')) for n, b in zip(names, images)]


# ---------------------------------------------------------------- health, readiness, models


def test_health_answers_ok(client):
    r = client.get('/health')
    assert r.status_code == 200 and r.json() == {'status': 'ok'}


def test_ready_reports_the_loaded_model_version(client):
    r = client.get('/ready')
    assert r.status_code == 200 and r.json() == {'ready': True, 'model_version': 1}


def test_models_lists_version_1_as_served(client, trained):
    body = client.get('/models').json()
    assert body['serving'] == 1 and body['aliases'] == {}
    [row] = body['versions']
    assert row['version'] == 1 and row['serving'] is True
    assert row['accuracy'] == pytest.approx(trained[2]['model']['accuracy'])
    assert row['dataset_version'] == trained[2]['dataset_version']
    assert row['accepted'] == trained[2]['acceptance']['passed']


def test_openapi_documents_both_request_bodies_of_predict(client):
    body = client.get('/openapi.json').json()['paths']['/predict']['post']['requestBody']['content']
    assert {'application/json', 'multipart/form-data'} <= set(body)


def test_app_serves_the_version_or_alias_it_is_given(trained, tmp_path):
    s = copy_models(trained, tmp_path)
    open_registry(s).set_alias('staging', 1)
    with TestClient(create_app(s, model_ref='staging')) as c:
        assert c.get('/ready').json()['model_version'] == 1
        assert c.get('/models').json()['aliases'] == {'staging': 1}
    with TestClient(create_app(make_settings(tmp_path, MLPROJ_SERVING_MODEL='production'))) as c:
        assert 'production' in detail(c.get('/ready'), 503)


# ---------------------------------------------------------------- predictions from JSON pixels


def test_predict_reads_test_digits_sent_one_at_a_time(client, digits):
    X, y = digits
    got = [
        labels(client.post('/predict', json={'pixels': (x.tolist() if i % 2 else x.reshape(64).tolist())}))
        for i, x in enumerate(X)
    ]  # 8x8 and 64-long forms alternately
    assert all(len(g) == 1 for g in got)
    assert (np.concatenate(got) == y).mean() >= 0.9


def test_predict_reads_a_batch_of_test_digits_in_order(client, digits):
    X, y = digits
    as_8x8 = labels(client.post('/predict', json={'pixels': X.tolist()}))
    as_64 = labels(client.post('/predict', json={'pixels': X.reshape(N, 64).tolist()}))
    assert len(as_8x8) == N and (as_8x8 == as_64).all()
    assert (as_8x8 == y).mean() >= 0.9


def test_predict_tells_one_image_from_a_list_of_images(client, digits):
    X, _ = digits
    count = lambda pixels: len(labels(client.post('/predict', json={'pixels': pixels})))
    assert count(X[0].tolist()) == 1  # 8 rows of 8: one image
    assert count(X[0].reshape(64).tolist()) == 1
    assert count([X[0].tolist()]) == 1  # a list of one 8x8 image
    assert count([X[0].reshape(64).tolist()]) == 1
    assert count(X[:8].reshape(8, 64).tolist()) == 8  # eight 64-long images, not one 8x64 image
    assert count(X[:8].tolist()) == 8


def test_predict_returns_probabilities_that_sum_to_one_and_agree_with_the_label(client, digits):
    body = client.post('/predict', json={'pixels': digits[0][:10].tolist()}).json()
    assert body['model_version'] == 1
    for p in body['predictions']:
        assert len(p['probabilities']) == 10 and min(p['probabilities']) >= 0
        assert sum(p['probabilities']) == pytest.approx(1, abs=1e-5)
        assert p['label'] == int(np.argmax(p['probabilities']))


def test_served_probabilities_equal_the_registered_models_in_process(client, trained, digits):
    X = digits[0][:20]
    predictions = client.post('/predict', json={'pixels': X.tolist()}).json()['predictions']
    served = np.array([p['probabilities'] for p in predictions])
    local = Predictor(open_registry(trained[0]).load(1).onnx).probabilities(X.astype(np.float32))
    np.testing.assert_allclose(served, local, atol=1e-6)


def test_predict_answers_with_the_model_the_app_holds_now(tmp_path):
    "The model /predict uses is app.state.model as the request finds it (what a hot reload swaps), 503 while there is none."

    class Uniform:
        def probabilities(self, x):
            return np.full((len(x), 10), 0.1, np.float32)

    with TestClient(create_app(make_settings(tmp_path))) as c:  # an empty store: no model of its own
        r = c.post('/predict', json={'pixels': [[0] * 64] * 3})
        assert r.status_code == 503 and 'no model is registered' in r.json()['detail'], r.text
        c.app.state.model = ServedModel(version=99, predictor=Uniform(), manifest={})
        r = c.post('/predict', json={'pixels': [[0] * 64] * 3})
    assert r.status_code == 200 and r.json()['model_version'] == 99 and len(r.json()['predictions']) == 3
    assert r.headers['x-model-version'] == '99'


# ---------------------------------------------------------------- predictions from uploaded images


@pytest.mark.parametrize('dark_on_light', [False, True], ids=['light-on-dark', 'dark-on-light'])
def test_predict_reads_uploaded_pngs_of_large_digits_in_either_polarity(client, digits, dark_on_light):
    X, y = digits
    got = labels(client.post('/predict', files=uploads([png(x, dark_on_light=dark_on_light) for x in X])))
    assert len(got) == N and (got == y).mean() >= 0.75


def test_predict_reads_uploaded_jpegs_of_any_size_under_field_file(client, digits):
    X, y = digits
    sides = [40, 120, 333, 600] * 5
    images = [png(x, side=s, margin=s // 4, dark_on_light=True, fmt='JPEG') for x, s in zip(X[:20], sides)]
    got = labels(client.post('/predict', files=uploads(images, field='file', names=[f'd{i}.jpg' for i in range(20)])))
    assert (got == y[:20]).mean() >= 0.75


# ---------------------------------------------------------------- bad JSON: a 4xx whose detail says what to fix


def image(fill=1):
    return [[fill] * 8 for _ in range(8)]


BAD_PIXELS = {
    'ragged-rows': ([[1] * 8] * 7 + [[1] * 7], 'ragged'),
    '7x8': ([[1] * 8] * 7, 'shape 7x8'),
    '8x7': ([[1] * 7] * 8, 'shape 8x7'),
    '63-values': ([1] * 63, 'shape 63'),
    'list-with-a-short-image': ([[1] * 64, [1] * 64, [1] * 63], 'ragged'),
    'list-with-an-8x7-image': ([image(), [[1] * 7] * 8], 'ragged'),
    'mixed-64-and-8x8': ([[1] * 64, image()], 'ragged'),
    'nested-too-deep': ([[[[1]] * 8] * 8], 'shape 1x8x8x1'),
    'nested-too-deep-and-ragged': ([[[[1]] * 8] * 8, [1] * 64], 'nested too deeply'),
    'a-string-value': ([1] * 63 + ['7'], 'string'),
    'all-strings': (['1'] * 64, 'string'),
    'null-value': ([1] * 63 + [None], 'null'),
    'booleans': ([True] * 64, 'true'),
    'negative': ([1] * 63 + [-1], 'between 0 and 16'),
    'over-16': (image(17), 'between 0 and 16'),
    'over-16-in-second-image': ([image(), image(17)], 'pixels[1]'),
    'empty-list': ([], 'empty'),
    'list-of-empty': ([[]], 'empty'),
    'a-number': (5, 'must be a list'),
    'a-string': ('digits', 'must be a list'),
    'an-object': ({'a': 1}, 'must be a list'),
}


@pytest.mark.parametrize('pixels,expected', BAD_PIXELS.values(), ids=BAD_PIXELS.keys())
def test_predict_rejects_malformed_pixels(client, pixels, expected):
    assert expected in detail(client.post('/predict', json={'pixels': pixels}), 422)


BAD_JSON = {
    'nan': ('{"pixels": [' + '1,' * 63 + 'NaN]}', 'between 0 and 16'),
    'infinity': ('{"pixels": [' + '1,' * 63 + 'Infinity]}', 'between 0 and 16'),
    'huge-float': ('{"pixels": [' + '1,' * 63 + '1e400]}', 'between 0 and 16'),
    'huge-integer': ('{"pixels": [' + '1,' * 63 + '1' + '0' * 400 + ']}', 'outside 0..16'),
    'past-int16': ('{"pixels": [' + '1,' * 63 + '40000]}', 'between 0 and 16'),  # integers are first read as int16
    'digits-as-strings': (
        '{"pixels": [' + '"1",' * 63 + '"1"]}',
        'is a string',
    ),  # not read as numbers by the int16 path
    'no-pixels-field': ('{"pixel": []}', 'no "pixels" field'),
    'extra-field': ('{"pixels": ' + json.dumps([1] * 64) + ', "labels": [1]}', "unexpected field 'labels'"),
    'not-an-object': (json.dumps([1] * 64), 'must be an object'),
}


@pytest.mark.parametrize('body,expected', BAD_JSON.values(), ids=BAD_JSON.keys())
def test_predict_rejects_json_bodies_that_hold_no_valid_pixels(client, body, expected):
    assert expected in detail(client.post('/predict', content=body, headers=JSON), 422)


@pytest.mark.parametrize(
    'body',
    ['{"pixels": [1, 2', 'pixels=1', '[' * 100_000, b'\xff\xfe\x00garbage'],
    ids=['truncated', 'not-json', 'nested-100k-deep', 'not-utf8'],
)
def test_predict_rejects_invalid_json_with_400(client, body):
    assert 'not valid JSON' in detail(client.post('/predict', content=body, headers=JSON), 400)


@pytest.mark.parametrize('headers', [{'content-type': 'application/json'}, {}], ids=['json', 'no-content-type'])
def test_predict_rejects_an_empty_body(client, headers):
    assert 'empty' in detail(client.post('/predict', content=b'', headers=headers), 400)


@pytest.mark.parametrize('content_type', ['text/plain', 'application/x-www-form-urlencoded', 'image/png'])
def test_predict_rejects_other_content_types_saying_what_to_send(client, content_type):
    d = detail(client.post('/predict', content=b'1,2,3', headers={'content-type': content_type}), 415)
    assert 'JSON' in d and 'multipart' in d


# ---------------------------------------------------------------- bad uploads


def test_predict_rejects_a_file_that_is_not_an_image_naming_it(client, digits):
    files = uploads([png(digits[0][0]), b'just some words'], names=['one.png', 'notes.txt'])
    d = detail(client.post('/predict', files=files), 422)
    assert "file 2 ('notes.txt')" in d and 'not an image' in d


def test_predict_rejects_an_image_of_one_flat_colour(client):
    buf = io.BytesIO()
    Image.new('L', (50, 50), 200).save(buf, 'PNG')
    assert 'flat' in detail(client.post('/predict', files=uploads([buf.getvalue()])), 422)


def test_predict_rejects_a_truncated_image(client, digits):
    data = png(digits[0][0])
    assert 'truncated' in detail(client.post('/predict', files=uploads([data[: len(data) // 2]])), 422)


def test_predict_rejects_an_empty_file(client):
    assert 'empty' in detail(client.post('/predict', files=uploads([b''])), 422)


def test_predict_rejects_an_image_larger_than_max_image_side(trained, tmp_path, digits):
    with TestClient(create_app(settings_on(trained, tmp_path, MLPROJ_SERVING_MAX_IMAGE_SIDE='100'))) as c:
        assert 'largest side allowed is 100' in detail(c.post('/predict', files=uploads([png(digits[0][0])])), 422)
        assert c.post('/predict', files=uploads([png(digits[0][0], side=60, margin=10)])).status_code == 200


def test_predict_rejects_a_decompression_bomb_without_decoding_it(client):
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))

    bomb = (
        b'\x89PNG\r\n\x1a\n'
        + chunk(b'IHDR', struct.pack('>IIBBBBB', 20000, 20000, 8, 0, 0, 0, 0))
        + chunk(b'IDAT', zlib.compress(b'\0' * 100))
        + chunk(b'IEND', b'')
    )
    assert "file 1 ('digit0.png')" in detail(client.post('/predict', files=uploads([bomb])), 422)


def test_predict_rejects_multipart_without_files(client):
    r = client.post('/predict', content=b'--xyz--\r\n', headers={'content-type': 'multipart/form-data; boundary=xyz'})
    assert 'no files' in detail(r, 422)
    assert 'holds text' in detail(client.post('/predict', data={'files': 'digit.png'}, files=[('x', ('a', b'1'))]), 422)


def test_predict_rejects_files_under_another_field_name(client, digits):
    r = client.post('/predict', files=uploads([png(digits[0][0])], field='image'))
    assert "unexpected field 'image'" in detail(r, 422)


def test_predict_rejects_multipart_without_a_boundary(client):
    r = client.post('/predict', content=b'abc', headers={'content-type': 'multipart/form-data'})
    assert 'boundary' in detail(r, 400)


# ---------------------------------------------------------------- binary bodies: .npy files and raw uint8 counts

NPY, RAW = {'content-type': 'application/x-npy'}, {'content-type': 'application/octet-stream'}


def npy(a, allow_pickle=False) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.asarray(a), allow_pickle=allow_pickle)
    return buf.getvalue()


@pytest.mark.parametrize('dtype', ['uint8', 'int64', '>f4', 'float64'])
def test_predict_answers_an_npy_batch_exactly_as_the_same_json(client, digits, dtype):
    X = digits[0][:20]
    as_json = client.post('/predict', json={'pixels': X.tolist()})
    for shape in [(20, 8, 8), (20, 64)]:
        r = client.post('/predict', content=npy(X.reshape(shape).astype(dtype)), headers=NPY)
        assert r.status_code == 200 and r.json() == as_json.json(), r.text
    fortran = np.asfortranarray(X.reshape(20, 64).astype(dtype))
    assert client.post('/predict', content=npy(fortran), headers=NPY).json() == as_json.json()


def test_predict_answers_one_npy_image_and_raw_counts_as_json(client, digits):
    X = digits[0][:5]
    one = client.post('/predict', json={'pixels': X[0].tolist()}).json()
    assert client.post('/predict', content=npy(X[0].astype('uint8')), headers=NPY).json() == one
    assert client.post('/predict', content=npy(X[0].reshape(64)), headers=NPY).json() == one
    batch = client.post('/predict', json={'pixels': X.tolist()}).json()
    assert client.post('/predict', content=X.astype('uint8').tobytes(), headers=RAW).json() == batch
    assert (
        client.post('/predict', content=X[0].astype('uint8').tobytes(), headers=RAW).json()['predictions']
        == one['predictions']
    )


def test_predict_answers_in_binary_when_the_accept_header_asks(client, digits):
    "Accept: application/octet-stream gives raw float32 probabilities, application/x-npy a .npy file: the JSON's numbers."
    X = digits[0][:9]
    as_json = np.array(
        [p['probabilities'] for p in client.post('/predict', json={'pixels': X.tolist()}).json()['predictions']],
        np.float32,
    )
    raw = client.post(
        '/predict', content=X.astype('uint8').tobytes(), headers={**RAW, 'accept': 'application/octet-stream'}
    )
    assert (
        raw.status_code == 200
        and raw.headers['content-type'] == 'application/octet-stream'
        and raw.headers['x-model-version'] == '1'
    )
    np.testing.assert_array_equal(np.frombuffer(raw.content, '<f4').reshape(-1, 10), as_json)
    as_npy = client.post(
        '/predict', json={'pixels': X.tolist()}, headers={'accept': 'application/x-npy;q=0.9, application/json;q=0.5'}
    )
    assert as_npy.headers['content-type'] == 'application/x-npy'
    np.testing.assert_array_equal(np.load(io.BytesIO(as_npy.content), allow_pickle=False), as_json)
    for accept in (
        'application/json',
        '*/*',
        'application/json, application/x-npy',
        'text/html',
    ):  # JSON first or nothing binary: JSON
        r = client.post('/predict', content=X.astype('uint8').tobytes(), headers={**RAW, 'accept': accept})
        assert r.headers['content-type'] == 'application/json', accept
    documented = client.get('/openapi.json').json()['paths']['/predict']['post']['responses']['200']['content']
    assert {'application/json', 'application/octet-stream', 'application/x-npy'} <= set(documented)


def test_every_predict_answer_matches_the_documented_response_model(client, digits):
    from deploy.schemas import PredictResponse

    for body, headers in [(npy(digits[0][:7]), NPY), (json.dumps({'pixels': digits[0][0].tolist()}), JSON)]:
        r = client.post('/predict', content=body, headers=headers)
        got = PredictResponse.model_validate_json(r.content)
        assert r.headers['content-type'] == 'application/json' and r.headers['x-model-version'] == '1'
        assert all(p.label == int(np.argmax(p.probabilities)) for p in got.predictions)


BAD_NPY = {
    'booleans': (npy(np.ones((2, 64), bool)), 422, 'pixel values must be numbers'),
    'strings': (npy(np.array(['1'] * 64)), 422, 'pixel values must be numbers'),
    'complex': (npy(np.ones(64, complex)), 422, 'pixel values must be numbers'),
    'over-16-in-second-image': (
        npy(np.stack([np.ones((8, 8)), np.full((8, 8), 17)])),
        422,
        'the array[1]: pixel values',
    ),
    'nan': (npy(np.r_[np.ones(63), np.nan]), 422, 'between 0 and 16'),
    'negative': (npy(np.r_[np.ones(63), -1]), 422, 'between 0 and 16'),
    'huge-float': (npy(np.r_[np.ones(63), 1e300]), 422, 'between 0 and 16'),
    'shape-7x8': (npy(np.ones((7, 8))), 422, 'shape 7x8'),
    'a-scalar': (npy(np.float32(3)), 422, 'shape'),
    'empty-batch': (npy(np.ones((0, 64))), 422, 'shape 0x64'),
    'not-npy': (b'1,2,3' * 20, 400, 'not a .npy file'),
    'a-pickle': (npy(np.array([{'a': 1}] * 64, dtype=object), allow_pickle=True), 422, 'pixel values must be numbers'),
    'truncated': (npy(np.ones((3, 64), 'u1'))[:-10], 400, 'bytes of data'),
    'trailing-bytes': (npy(np.ones((3, 64), 'u1')) + b'xx', 400, 'bytes of data'),
    'header-not-a-literal': (npy(np.ones((3, 64), 'u1')).replace(b'(3, 64)', b'(3*1, 64)'), 400, 'not a .npy file'),
    'claims-a-huge-shape': (
        npy(np.ones((3, 64), 'u1')).replace(b'(3, 64), ', b'(10000000000000000000000, 64)'),
        413,
        'at most 256',
    ),
    'claims-a-huge-image': (
        npy(np.ones((3, 64), 'u1')).replace(b'(3, 64), ', b'(3, 100000000000000000000)'),
        422,
        'shape',
    ),
}


@pytest.mark.parametrize('body,status,expected', BAD_NPY.values(), ids=BAD_NPY.keys())
def test_predict_rejects_bad_npy_bodies_saying_why(client, body, status, expected):
    assert expected in detail(client.post('/predict', content=body, headers=NPY), status)


@pytest.mark.parametrize(
    'body,status,expected',
    [
        (bytes(63), 422, 'not a multiple of 64'),
        (bytes(64 * 3 + 1), 422, 'not a multiple of 64'),
        (bytes(64) + bytes([0] * 63 + [17]), 422, 'images[1]: pixel values must be counts between 0 and 16'),
        (bytes(64 * 257), 413, 'at most 256'),
        (b'', 400, 'empty'),
    ],
    ids=['63-bytes', '193-bytes', 'over-16-in-second-image', '257-images', 'empty'],
)
def test_predict_rejects_bad_raw_bodies_saying_why(client, body, status, expected):
    assert expected in detail(client.post('/predict', content=body, headers=RAW), status)


# ---------------------------------------------------------------- limits


@pytest.fixture
def small_limits(trained, tmp_path):
    "The fixture's model behind a 2000-byte body limit and at most 3 images per request."
    s = settings_on(trained, tmp_path, MLPROJ_SERVING_MAX_BODY_BYTES='2000', MLPROJ_SERVING_MAX_BATCH='3')
    with TestClient(create_app(s)) as c:
        yield c


def test_predict_refuses_a_body_over_max_body_bytes(small_limits, digits):
    big = json.dumps({'pixels': digits[0][:3].tolist(), 'padding': ' ' * 3000}).encode()
    assert '2000 bytes' in detail(small_limits.post('/predict', content=big, headers=JSON), 413)
    assert '2000 bytes' in detail(small_limits.post('/predict', files=uploads([png(digits[0][0])] * 2)), 413)


def test_predict_refuses_a_chunked_body_once_it_passes_max_body_bytes(small_limits, digits):
    def chunks(body, size=500):
        yield from (body[i : i + size] for i in range(0, len(body), size))

    big = json.dumps({'pixels': [[16] * 64] * 3, 'padding': ' ' * 3000}).encode()
    r = small_limits.post('/predict', content=chunks(big), headers=JSON)
    assert 'content-length' not in r.request.headers
    assert '2000 bytes' in detail(r, 413)
    small = json.dumps({'pixels': digits[0][:2].reshape(2, 64).tolist()}).encode()  # under the limit: answered
    assert len(labels(small_limits.post('/predict', content=chunks(small), headers=JSON))) == 2


def test_predict_refuses_more_images_than_max_batch(small_limits, digits):
    X = digits[0]
    assert 'at most 3' in detail(small_limits.post('/predict', json={'pixels': X[:4].reshape(4, 64).tolist()}), 413)
    assert len(labels(small_limits.post('/predict', json={'pixels': X[:3].reshape(3, 64).tolist()}))) == 3
    small = png(X[0], side=16, margin=4)
    assert 'at most 3' in detail(small_limits.post('/predict', files=uploads([small] * 4)), 413)


def run_asgi(app, headers=(), chunk=b'x' * 1000):
    "Run `app` on one request whose body never ends; (receive calls made, messages sent)."
    calls, sent = 0, []

    async def receive():
        nonlocal calls
        calls += 1
        return {'type': 'http.request', 'body': chunk, 'more_body': True}

    async def send(message):
        sent.append(message)

    scope = {'type': 'http', 'method': 'POST', 'path': '/predict', 'headers': list(headers)}
    anyio.run(app, scope, receive, send)
    return calls, sent


async def read_forever(scope, receive, send):
    "An app that reads whatever body it is given (up to 1000 chunks, so a broken limit fails rather than hangs)."
    for _ in range(1000):
        await receive()


def test_body_limit_stops_an_endless_stream_just_past_the_limit():
    calls, sent = run_asgi(BodyLimit(read_forever, max_bytes=5000))
    assert calls == 6  # 6 chunks of 1000 bytes: the first past 5000 is the last one read
    assert sent[0]['status'] == 413 and b'5000 bytes' in sent[1]['body']


def test_body_limit_refuses_a_declared_length_without_reading_the_body():
    calls, sent = run_asgi(BodyLimit(read_forever, max_bytes=5000), headers=[(b'content-length', b'10000000000')])
    assert calls == 0 and sent[0]['status'] == 413
    calls, sent = run_asgi(BodyLimit(read_forever, max_bytes=5000), headers=[(b'content-length', b'lots')])
    assert calls == 0 and sent[0]['status'] == 400


# ---------------------------------------------------------------- no model, or a model that fails its check


def test_without_a_model_the_app_is_alive_but_not_ready(tmp_path, caplog):
    with caplog.at_level(logging.ERROR, logger='deploy'), TestClient(create_app(make_settings(tmp_path))) as c:
        assert c.get('/health').json() == {'status': 'ok'}
        assert 'no model is registered' in detail(c.get('/ready'), 503)
        assert 'no model is registered' in detail(c.post('/predict', json={'pixels': [0] * 64}), 503)
        assert c.get('/models').json() == {'serving': None, 'reload_error': None, 'aliases': {}, 'versions': []}
    assert 'no model is registered' in caplog.text


def test_a_tampered_model_file_is_refused(trained, tmp_path, caplog):
    s = copy_models(trained, tmp_path)
    onnx = Path(s.store_url) / 'models' / '1' / 'model.onnx'
    data = bytearray(onnx.read_bytes())
    data[len(data) // 2] ^= 0xFF
    onnx.write_bytes(bytes(data))
    with caplog.at_level(logging.ERROR, logger='deploy'), TestClient(create_app(s)) as c:
        assert c.get('/health').status_code == 200
        for r in (c.get('/ready'), c.post('/predict', json={'pixels': [0] * 64})):
            d = detail(r, 503)
            assert 'sha256' in d and 'refusing' in d
        assert c.get('/models').json()['serving'] is None
    assert 'model.onnx does not match its sha256' in caplog.text


# ---------------------------------------------------------------- imports stay light


def test_serving_imports_neither_torch_nor_lightning_nor_wandb(trained, tmp_path):
    script = """if True:
        import json, sys
        import deploy.app
        heavy = ('torch', 'pytorch_lightning', 'lightning', 'wandb')
        at_import = [m for m in heavy if m in sys.modules]
        from fastapi.testclient import TestClient
        with TestClient(deploy.app.app_from_env()) as c:
            status = c.post('/predict', json={'pixels': [[0] * 64]}).status_code
        print(json.dumps([at_import, [m for m in heavy if m in sys.modules], status]))"""
    out = subprocess.run(
        [sys.executable, '-c', script],
        cwd=ROOT,
        env=server_env(trained, tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.splitlines()[-1]) == [[], [], 200]


# ---------------------------------------------------------------- over real HTTP: uvicorn in a subprocess


def server_env(trained, tmp, **env):
    "The environment of a process serving the fixture's store (no MLPROJ_* inherited from outside)."
    return serving_env(trained[0].store_url, tmp / 'reports', **env)


HTTP_LIMIT = 200_000


@pytest.fixture(scope='module')
def server(trained, tmp_path_factory):
    "Base URL of uvicorn serving the fixture's model version 1 with a body limit of HTTP_LIMIT."
    env = server_env(
        trained, tmp_path_factory.mktemp('server'), MLPROJ_SERVING_MAX_BODY_BYTES=str(HTTP_LIMIT), MLPROJ_MODEL='1'
    )
    with uvicorn_server(env) as srv:
        yield srv.url


def test_uvicorn_serves_predictions_over_http(server, digits):
    X, y = digits
    with httpx.Client(base_url=server) as http:
        assert http.get('/health').json() == {'status': 'ok'}
        assert http.get('/ready').json() == {'ready': True, 'model_version': 1}
        assert http.get('/models').json()['serving'] == 1
        r = http.post('/predict', json={'pixels': X.tolist()})
        assert r.json()['model_version'] == 1 and (labels(r) == y).mean() >= 0.9
        got = labels(http.post('/predict', files=uploads([png(x, dark_on_light=True) for x in X[:20]])))
        assert (got == y[:20]).mean() >= 0.75


def test_uvicorn_refuses_oversized_bodies_declared_or_streamed(server):
    body = json.dumps({'pixels': [[1] * 64], 'padding': ' ' * HTTP_LIMIT}).encode()

    def chunks(size=16_384):
        yield from (body[i : i + size] for i in range(0, len(body), size))

    with httpx.Client(base_url=server, headers={'content-type': 'application/json'}) as http:
        assert f'{HTTP_LIMIT} bytes' in detail(http.post('/predict', content=body), 413)
        r = http.post('/predict', content=chunks())
        assert r.request.headers['transfer-encoding'] == 'chunked' and f'{HTTP_LIMIT} bytes' in detail(r, 413)
        assert 'JSON' in detail(http.post('/predict', content=b'1,2', headers={'content-type': 'text/plain'}), 415)
        assert http.get('/health').status_code == 200  # the server goes on answering
