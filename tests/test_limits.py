"""The service under hostile or careless clients, over real HTTP (uvicorn in a subprocess): memory bounded by
settings, no request stalling the others, slow and vanishing clients, images as people send them."""

import io
import json
import os
import select
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import anyio
import httpx
import numpy as np
import pytest
from conftest import ServerProcess, make_settings, serving_env, uvicorn_server, wait_until
from fastapi.testclient import TestClient
from PIL import Image
from test_api import detail, labels, server_env, uploads

from deploy.app import create_app
from deploy.limits import Guard, Processes
from deploy.routes.predict import INLINE_BYTES
from mlproj.console import serve_argv
from mlproj.digits_preprocess import render_counts
from mlproj.settings import load_settings


def rss_kb(pid: int, key: str) -> int:
    "VmRSS or VmHWM (peak) of a process, in kB, from /proc."
    with open(f'/proc/{pid}/status') as f:
        for line in f:
            if line.startswith(key + ':'):
                return int(line.split()[1])
    raise KeyError(key)


def reset_peak(pid: int):
    "Make VmHWM start again from the current RSS (Linux: write 5 to clear_refs)."
    with open(f'/proc/{pid}/clear_refs', 'w') as f:
        f.write('5')


def family(pid: int) -> list[int]:
    "`pid` and every process it started, and theirs (the processes that parse large JSON bodies)."
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f'/proc/{p}/task'):
                with open(f'/proc/{p}/task/{task}/children') as f:
                    todo += [int(c) for c in f.read().split()]
        except FileNotFoundError:
            pass  # it ended meanwhile
    return out


def family_kb(pid: int, key: str) -> int:
    "`rss_kb` added up over `family(pid)`: with VmHWM, each one's own peak."
    total = 0
    for p in family(pid):
        try:
            total += rss_kb(p, key)
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


def rgba_png(side=4096, seed=0) -> bytes:
    "A large RGBA PNG with a digit-like stroke on a transparent canvas (small once compressed, large once decoded)."
    a = np.zeros((side, side, 4), np.uint8)
    a[side // 4 : 3 * side // 4, side // 2 - side // 16 : side // 2 + side // 16] = (0, 0, 0, 255)  # a thick bar: a one
    a[seed % 7, seed % 5] = (seed % 255, 0, 0, 10)
    buf = io.BytesIO()
    Image.fromarray(a, 'RGBA').save(buf, 'PNG')
    return buf.getvalue()


def raw_request(url: str, head: str, body: bytes = b'') -> socket.socket:
    "A socket that has sent `head` (request line and headers, CRLF-joined, without the blank line) and `body`."
    u = urlsplit(url)
    s = socket.create_connection((u.hostname, u.port), timeout=30)
    s.sendall(head.encode() + b'\r\n\r\n' + body)
    return s


def read_all(s: socket.socket) -> bytes:
    "Everything the server sends until it closes the connection."
    out = b''
    while chunk := s.recv(65536):
        out += chunk
    return out


@pytest.fixture(scope='module')
def limited(trained, tmp_path_factory):
    "uvicorn with a 1 s body timeout and 3 requests in progress at most (a ServerProcess)."
    env = server_env(
        trained,
        tmp_path_factory.mktemp('limited'),
        MLPROJ_MODEL='1',
        MLPROJ_SERVING_BODY_TIMEOUT='1',
        MLPROJ_SERVING_MAX_CONCURRENT='3',
    )
    with uvicorn_server(env) as srv:
        yield srv


# ---------------------------------------------------------------- slow and vanishing clients


def test_a_body_that_does_not_arrive_in_time_gets_408_and_the_connection_closed(limited):
    url = limited.url
    s = raw_request(
        url,
        'POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000',
        b'{"pixels": [',
    )
    answer = read_all(s)  # returns only once the server has closed the connection
    s.close()
    assert answer.startswith(b'HTTP/1.1 408') and b'did not arrive within 1 seconds' in answer


def test_past_max_concurrent_a_request_gets_503_at_once_and_health_still_answers(limited):
    url = limited.url
    head = 'POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000'
    holders = [raw_request(url, head, b'{"pixels": [') for _ in range(3)]  # three requests waiting for their bodies
    try:
        time.sleep(0.3)  # let the server take them in
        r = httpx.post(f'{url}/predict', json={'pixels': [0] * 64})
        assert 'busy' in detail(r, 503) and r.headers['retry-after'] == '1'
        assert httpx.get(f'{url}/health').status_code == 200
        for s in holders:
            assert read_all(s).startswith(b'HTTP/1.1 408')  # each times out, freeing its place
    finally:
        for s in holders:
            s.close()
    assert httpx.post(f'{url}/predict', json={'pixels': [0] * 64}).status_code == 200


def metric(url: str, name: str) -> dict[str, float]:
    "Every sample of a metric on /metrics: its labels text (or '') -> value."
    out = {}
    for line in httpx.get(f'{url}/metrics').text.splitlines():
        if line.startswith((name + '{', name + ' ')):
            key, value = line.rsplit(' ', 1)
            out[key[len(name) :]] = float(value)
    return out


def test_a_client_leaving_mid_body_is_counted_as_a_disconnect_in_one_log_line_not_as_a_500(limited):
    url = limited.url
    before = len(limited.lines)
    for _ in range(5):
        s = raw_request(
            url,
            'POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000',
            b'{"pixels": [1, 2',
        )
        time.sleep(0.05)
        s.close()
    wait_until(
        lambda: sum('went away' in line for line in limited.lines[before:]) >= 5,
        10,
        0.1,
        what='five "went away" log lines',
    )
    new = limited.lines[before:]
    assert sum('went away' in line for line in new) == 5, ''.join(new)
    assert len(new) == 5 and not any('Traceback' in line for line in new), ''.join(new)
    assert metric(url, 'mlproj_http_client_disconnects_total') == {'{method="POST",route="/predict"}': 5.0}
    assert not any(
        'status="500"' in k for k in metric(url, 'mlproj_http_requests_total')
    )  # the public error rate is not inflated


def test_a_client_leaving_mid_body_of_a_json_route_is_a_disconnect_not_a_400(limited):
    "FastAPI turns a failure while reading a declared body into 400; a client that left is still counted as a disconnect."
    url = limited.url
    before = metric(url, 'mlproj_http_client_disconnects_total').get('{method="POST",route="/admin/promote"}', 0)
    s = raw_request(
        url,
        'POST /admin/promote HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer x\r\nContent-Type: application/json\r\n'
        'Content-Length: 1000',
        b'{"version": 9, "rea',
    )
    time.sleep(0.05)
    s.close()
    wait_until(
        lambda: (
            metric(url, 'mlproj_http_client_disconnects_total').get('{method="POST",route="/admin/promote"}', 0)
            != before
        ),
        10,
        what='the disconnect counted',
    )
    assert metric(url, 'mlproj_http_client_disconnects_total')['{method="POST",route="/admin/promote"}'] == before + 1
    assert not any('route="/admin/promote"' in k for k in metric(url, 'mlproj_http_requests_total'))


async def guarded(app, chunks: list, gaps: float, body_timeout: float = 0.3) -> list:
    "The messages `Guard(app)` sends for a POST whose body comes as `chunks`, `gaps` seconds apart (then nothing)."
    import asyncio

    sent, queue = [], list(chunks)

    async def receive():
        if not queue:
            await asyncio.sleep(3600)  # the body is in: a disconnect would come only when the client leaves
        await asyncio.sleep(gaps)
        return {'type': 'http.request', 'body': queue.pop(0), 'more_body': bool(queue)}

    async def send(message):
        sent.append(message)

    scope = {'type': 'http', 'method': 'POST', 'path': '/predict', 'headers': [], 'state': {}}
    await Guard(app, max_concurrent=4, body_timeout=body_timeout)(scope, receive, send)
    return sent


async def read_then_answer(scope, receive, send, then: float = 0.0):
    "An ASGI app that reads the whole body, waits `then` seconds and answers 200 with the body's length."
    import asyncio

    n, more = 0, True
    while more:
        m = await receive()
        n, more = n + len(m['body']), m['more_body']
    await asyncio.sleep(then)
    await send({'type': 'http.response.start', 'status': 200, 'headers': []})
    await send({'type': 'http.response.body', 'body': b'%d' % n})


def test_the_body_deadline_cuts_a_wait_for_the_body_and_nothing_after_it():
    import asyncio
    from functools import partial

    slow = asyncio.run(guarded(read_then_answer, [b'a', b'b', b'c'], gaps=0.2))  # 0.6 s of body for 0.3 s allowed
    assert slow[0]['status'] == 408 and b'did not arrive within 0.3 seconds' in slow[1]['body']
    # the body in time, then work longer than the deadline: answered, the timer cancelled nothing
    late = asyncio.run(guarded(partial(read_then_answer, then=0.5), [b'ab', b'c'], gaps=0.05))
    assert late[0]['status'] == 200 and late[1]['body'] == b'3'


def test_a_cancellation_from_elsewhere_during_the_body_wait_stays_a_cancellation():
    "Server shutdown cancels a request's task: the Guard must not turn that into a 408 (or swallow it)."
    import asyncio

    async def main():
        task = asyncio.create_task(guarded(read_then_answer, [b'a', b'b'], gaps=5, body_timeout=10))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())


# ---------------------------------------------------------------- request heads that never finish


def closed_by_server(s: socket.socket, within: float = 30) -> bool:
    "True once the server has closed the connection (reads end), False if it is still open after `within` seconds."
    s.settimeout(within)
    try:
        while s.recv(65536):
            pass
        return True
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def test_connections_that_never_finish_their_request_head_are_closed_after_the_header_timeout(tmp_path):
    env = serving_env(tmp_path / 'store', tmp_path / 'reports', MLPROJ_SERVING_HEADER_TIMEOUT='1')  # no model needed
    with ServerProcess(serve_argv('127.0.0.1', 0), env, ready='/health') as srv:
        u = urlsplit(srv.url)
        connect = lambda: socket.create_connection((u.hostname, u.port), timeout=30)
        half = [connect() for _ in range(20)]
        for s in half:
            s.sendall(b'GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ')  # half a head, then nothing
        silent = [connect() for _ in range(5)]  # connected, never a byte
        kept = connect()  # one full request on a keep-alive connection, then half of the next head
        kept.sendall(b'GET /health HTTP/1.1\r\nHost: x\r\n\r\n')
        assert kept.recv(65536).startswith(b'HTTP/1.1 200')
        kept.sendall(b'GET /health HTTP/1.1\r\nHo')
        trickle = connect()  # a byte at a time, each well within the timeout
        stop = threading.Event()

        def drip():
            for b in b'GET /health HTTP/1.1\r\nHost: x\r\n' + b'X-A: b\r\n' * 1000:
                if stop.wait(0.1):
                    return
                try:
                    trickle.send(bytes([b]))
                except OSError:
                    return

        dripper = threading.Thread(target=drip)
        dripper.start()
        try:
            assert all(closed_by_server(s) for s in [*half, *silent, kept, trickle])
            assert httpx.get(f'{srv.url}/health').status_code == 200  # the server itself is fine
        finally:
            stop.set()
            dripper.join()
            for s in [*half, *silent, kept, trickle]:
                s.close()
        code = srv.stop()
    assert code == 0, srv.log
    assert srv.log.count('no complete request head within 1 s') == 27, srv.log


def test_a_request_head_sent_in_pieces_within_the_header_timeout_is_answered(tmp_path):
    env = serving_env(tmp_path / 'store', tmp_path / 'reports', MLPROJ_SERVING_HEADER_TIMEOUT='5')
    with ServerProcess(serve_argv('127.0.0.1', 0), env, ready='/health') as srv:
        s = raw_request(srv.url, 'GET /health HTTP/1.1\r\nHost: x')  # no blank line yet: the head is not complete
        time.sleep(0.5)
        s.sendall(b'\r\nConnection: close\r\n\r\n')
        assert read_all(s).startswith(b'HTTP/1.1 200')
        s.close()


# ---------------------------------------------------------------- no request stalls the others


def test_health_answers_while_a_large_json_body_is_still_being_processed(trained, tmp_path):
    env = server_env(trained, tmp_path, MLPROJ_MODEL='1', MLPROJ_SERVING_MAX_BATCH='100000')
    rng = np.random.default_rng(0)
    body = json.dumps({'pixels': (rng.random((3200, 64)) * 16).tolist()}).encode()  # about 4 MB of floats
    assert 3_500_000 < len(body) < 4_000_000
    with uvicorn_server(env) as srv:
        url = srv.url
        big = raw_request(
            url,
            f'POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n'
            f'Content-Length: {len(body)}\r\nConnection: close',
            body,
        )
        health = raw_request(url, 'GET /health HTTP/1.1\r\nHost: x\r\nConnection: close')
        ready, _, _ = select.select([big, health], [], [], 60)  # whichever answers first
        first = 'health' if health in ready else 'big'
        answers = read_all(health), read_all(big)
        big.close(), health.close()
    assert answers[0].startswith(b'HTTP/1.1 200') and answers[1].startswith(b'HTTP/1.1 200'), answers[1][:300]
    assert first == 'health' and big not in ready  # /health answered while the large body was still being worked on


def test_a_large_json_body_is_parsed_in_another_process_and_a_small_one_inline(limited):
    "Parsing holds the GIL: a large body parsed by a thread would hold the event loop (and /health) as long."
    url = limited.url
    before = metric(url, 'mlproj_large_json_bodies_total')['']
    small = {'pixels': [[0] * 64] * 4}
    assert httpx.post(f'{url}/predict', json=small).status_code == 200
    assert metric(url, 'mlproj_large_json_bodies_total')[''] == before
    pixels = np.random.default_rng(0).random((250, 64)) * 16
    body = json.dumps({'pixels': pixels.tolist()}).encode()
    assert len(body) > INLINE_BYTES
    r = httpx.post(f'{url}/predict', content=body, headers={'Content-Type': 'application/json'}, timeout=60)
    assert len(labels(r)) == 250
    assert metric(url, 'mlproj_large_json_bodies_total')[''] == before + 1
    pixels[3, 5] = 17.5  # a refusal comes back from the other process as it is
    r = httpx.post(f'{url}/predict', json={'pixels': pixels.tolist()}, timeout=60)
    assert 'pixels[3]' in detail(r, 422)
    assert metric(url, 'mlproj_large_json_bodies_total')[''] == before + 2


def test_work_sent_to_the_processes_runs_in_another_process():
    async def main():
        p = Processes(1)
        try:
            return await p.run(os.getpid), await p.run(os.getpid)
        finally:
            p.close()

    pids = anyio.run(main)
    assert pids[0] == pids[1] != os.getpid()


# ---------------------------------------------------------------- memory bounded by settings


def ceiling_mb(serving, n_bodies: int, body_bytes: int) -> float:
    "The memory settings.ini allows above idle: decode_threads decodes of max_image_pixels at 8 bytes, the bodies, 32 MB."
    return (serving.decode_threads * serving.max_image_pixels * 8 + n_bodies * body_bytes) / 2**20 + 32


def peak_above_idle_mb(srv, warm_up, bodies, post) -> tuple[float, list]:
    "Peak RSS above idle (MB) of the server and its processes while `post(client, body)` sends every body at once, one client each; and the answers."
    with httpx.Client(base_url=srv.url, timeout=300) as http:
        post(http, warm_up)  # first-use allocations are not the requests'
    idle = family_kb(srv.pid, 'VmRSS')  # the server and its processes (a process that starts later counts in full)
    for p in family(srv.pid):
        reset_peak(p)

    def send(body):
        with httpx.Client(base_url=srv.url, timeout=300) as http:
            return post(http, body)

    with ThreadPoolExecutor(len(bodies)) as pool:
        answers = list(pool.map(send, bodies))
    return (family_kb(srv.pid, 'VmHWM') - idle) / 1024, answers


def test_peak_memory_stays_under_the_settings_ceiling_with_16_large_uploads_at_once(trained, tmp_path):
    images = [rgba_png(seed=i) for i in range(16)]
    with uvicorn_server(server_env(trained, tmp_path, MLPROJ_MODEL='1')) as srv:
        peak_mb, answers = peak_above_idle_mb(
            srv, images[0], images, lambda http, img: http.post('/predict', files=uploads([img]))
        )
    assert all(labels(r).tolist() == [1] for r in answers), [r.text for r in answers]
    limit = ceiling_mb(load_settings().serving, len(images), len(images[0]))
    print(
        f'peak RSS above idle with 16 concurrent 4096x4096 RGBA PNG uploads: {peak_mb:.0f} MB (ceiling {limit:.0f} MB)'
    )
    assert peak_mb < limit


def test_peak_memory_stays_under_the_settings_ceiling_with_32_large_json_bodies_at_once(trained, tmp_path):
    serving = load_settings().serving
    rng = np.random.default_rng(0)  # max_batch images of counts written with 235 decimals: a body of about 3.9 MB
    rows = ['[' + ','.join(f'{v:.235f}' for v in row) + ']' for row in rng.random((serving.max_batch, 64)) * 16]
    body = ('{"pixels": [' + ','.join(rows) + ']}').encode()
    assert 3_500_000 < len(body) <= serving.max_body_bytes
    post = lambda http, b: http.post('/predict', content=b, headers={'Content-Type': 'application/json'})
    with uvicorn_server(server_env(trained, tmp_path, MLPROJ_MODEL='1')) as srv:
        peak_mb, answers = peak_above_idle_mb(srv, body, [body] * 32, post)
    assert all(len(labels(r)) == serving.max_batch for r in answers), [r.text[:200] for r in answers]
    limit = ceiling_mb(serving, 32, len(body))
    print(
        f'peak RSS above idle with 32 concurrent {len(body) / 1e6:.1f} MB JSON bodies: {peak_mb:.0f} MB (ceiling {limit:.0f} MB)'
    )
    assert peak_mb < limit


# ---------------------------------------------------------------- images as people send them


def encoded(a: np.ndarray, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, fmt, **kw)
    return buf.getvalue()


@pytest.fixture(scope='module')
def client(trained):
    with TestClient(create_app(trained[0])) as c:
        yield c


def seven() -> np.ndarray:
    "A 7 as 8-bit grey levels, dark on light, 220x220."
    return np.asarray(
        Image.open(
            io.BytesIO(
                render_counts(
                    np.array(
                        [
                            [0, 0, 0, 0, 0, 0, 0, 0],
                            [0, 2, 14, 16, 16, 16, 6, 0],
                            [0, 0, 0, 0, 3, 16, 4, 0],
                            [0, 0, 0, 0, 11, 12, 0, 0],
                            [0, 0, 0, 3, 16, 3, 0, 0],
                            [0, 0, 0, 10, 11, 0, 0, 0],
                            [0, 0, 1, 16, 5, 0, 0, 0],
                            [0, 0, 3, 13, 0, 0, 0, 0],
                        ]
                    )
                )
            )
        )
    )


def test_a_phone_jpeg_carrying_exif_orientation_is_read_upright(client):
    upright = seven()
    want = labels(client.post('/predict', files=uploads([encoded(upright, 'PNG')])))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned 90 degrees anticlockwise; the viewer turns it clockwise
    stored = np.rot90(upright, 1)
    got = labels(client.post('/predict', files=uploads([encoded(stored, 'JPEG', exif=exif, quality=95)])))
    assert got.tolist() == want.tolist() == [7]


def test_16_bit_and_float_images_are_scaled_by_their_own_range(client):
    ink = 1.0 - seven() / 255  # light on dark, 0..1
    deep = encoded((ink * 3000).astype(np.uint16), 'PNG')  # 16-bit, far below 65535
    as_int = encoded((ink * 70000).astype(np.int32), 'TIFF')
    as_float = encoded((ink * 0.01).astype(np.float32), 'TIFF')
    assert labels(client.post('/predict', files=uploads([deep, as_int, as_float]))).tolist() == [7, 7, 7]


@pytest.mark.parametrize(
    'pixels',
    [[True] + [0] * 63, [[0] * 64, [0] * 63 + [False]], [[0] * 8] * 7 + [[0] * 7 + [True]]],
    ids=['one-image', 'in-a-batch', 'in-a-row'],
)
def test_a_boolean_anywhere_among_the_pixels_is_refused(client, pixels):
    assert 'pixel values must be numbers' in detail(client.post('/predict', json={'pixels': pixels}), 422)


def test_images_over_the_pixel_budget_are_refused_before_decoding(trained, tmp_path):
    s = make_settings(
        tmp_path,
        MLPROJ_PATHS_STORE=trained[0].store_url,
        MLPROJ_SERVING_MAX_IMAGE_PIXELS='10000',
        MLPROJ_SERVING_MAX_REQUEST_PIXELS='60000',
    )
    small = encoded(np.pad(seven()[::3, ::3], 10, constant_values=255), 'PNG')  # 94x94: under 10000 pixels
    with TestClient(create_app(s)) as c:
        assert 'at most 10000 are allowed per image' in detail(
            c.post('/predict', files=uploads([encoded(seven(), 'PNG')])), 422
        )
        assert 'at most 60000 are allowed in one request' in detail(c.post('/predict', files=uploads([small] * 7)), 413)
        assert labels(c.post('/predict', files=uploads([small] * 3))).tolist() == [7, 7, 7]
