"""The crawler against a web site the tests serve on 127.0.0.1 (robots.txt, a redirect loop, a slow page, a 429 with
Retry-After, a 500 then a 200, huge files, broken HTML, the same image under two URLs), SIGKILL and resume with
nothing fetched or stored twice, and bad input through the real CLI: one line, nothing lost. The folder import is tests/test_collect.py."""

import io
import os
import signal
import sqlite3
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import ROOT, free_port, make_settings, wait_until
from PIL import Image
from test_collect import _cli

from mlproj.crawl import crawl
from mlproj.items import item_provenance
from mlproj.store import Store, sha256

MLPROJ = str(ROOT / '.venv' / 'bin' / 'mlproj')


def png(seed: int, size=12) -> bytes:
    b = io.BytesIO()
    Image.new('L', (size, size), seed % 256).save(b, 'PNG')
    return b.getvalue()


class Site:
    "A web site on 127.0.0.1: `routes` maps a path to (status, headers, body) or to a function of the Site giving one."

    def __init__(self, routes):
        self.routes, self.log, self.lock = (
            routes,
            [],
            threading.Lock(),
        )  # log: (path, status, time, user agent, completed)
        site = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.1'

            def do_GET(self):
                route = site.routes.get(self.path.split('?')[0])
                entry = [
                    self.path,
                    None,
                    time.monotonic(),
                    self.headers.get('User-Agent'),
                    False,
                ]  # logged as it arrives
                with site.lock:
                    site.log.append(entry)
                status, headers, body = (route(site) if callable(route) else route) if route else (404, {}, b'not here')
                entry[1] = status
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                if 'Content-Length' not in headers and not headers.get('_stream'):
                    self.send_header('Content-Length', str(len(body)))
                if headers.get('_stream'):
                    self.send_header('Connection', 'close')
                    self.close_connection = True
                self.end_headers()
                try:
                    if headers.get('_stream'):
                        for k in range(0, len(body), 65536):
                            self.wfile.write(body[k : k + 65536])
                    else:
                        self.wfile.write(body)
                    self.wfile.flush()
                    entry[4] = True
                except OSError:
                    pass

            def log_message(self, *a):
                pass

        self.server = _Server(('127.0.0.1', 0), Handler)
        self.server.daemon_threads = True
        self.url = f'http://127.0.0.1:{self.server.server_port}'
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def hits(self, path, status=None):
        return [e for e in self.log if e[0] == path and (status is None or e[1] == status)]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class _Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass  # a client that hangs up (a refused huge file) is expected


def html(*parts):
    return 200, {'Content-Type': 'text/html; charset=utf-8'}, ''.join(parts).encode()


def image(data, ct='image/png'):
    return (
        200,
        {'Content-Type': ct, 'ETag': f'"{sha256(data)[:8]}"', 'Last-Modified': 'Mon, 02 Nov 2026 10:00:00 GMT'},
        data,
    )


def once_then(first, then):
    "A route answering `first` to the first request and `then` afterwards."
    state = {'n': 0}

    def route(site):
        state['n'] += 1
        return first if state['n'] == 1 else then

    return route


def slow(seconds, answer):
    def route(site):
        time.sleep(seconds)
        return answer

    return route


IMG = {i: png(i) for i in range(10)}


@pytest.fixture
def site():
    s = Site(
        {
            '/robots.txt': (200, {'Content-Type': 'text/plain'}, b'User-agent: *\nDisallow: /private/\n'),
            '/': html(
                '<h1>digits</h1><a href="/gallery.html">g</a> <a href="/private/secret.html">s</a> <a href="/loop-a">loop</a>',
                '<a href="/slow.html">slow</a> <a href="/busy.html">busy</a> <a href="/flaky.html">flaky</a> <a href="/broken.html">b</a>',
                '<a href="http://elsewhere.invalid/x.html">away</a> <a href="/notes.txt">notes</a> <a href="/gone.html">gone</a>',
                '<img src="/img/1.png"><img src="/copy/1.png"><img src="/big.png"><img src="/big-stream.png"><img src="/private/p.png">',
            ),
            '/gallery.html': html(
                '<img src="img/2.png"><img src="/img/3.png"><a href="/">home</a><a href="/deep/1.html">deeper</a>'
            ),
            '/deep/1.html': html('<a href="/deep/2.html">x</a><img src="/img/6.png">'),
            '/deep/2.html': html(
                '<a href="/deep/3.html">x</a><img src="/img/7.png">'
            ),  # depth 3 with max_depth 2: not fetched
            '/deep/3.html': html('<img src="/img/8.png">'),
            '/private/secret.html': html('<img src="/img/9.png">'),
            '/private/p.png': image(IMG[9]),
            '/loop-a': (302, {'Location': '/loop-b'}, b''),
            '/loop-b': (302, {'Location': '/loop-a'}, b''),
            '/slow.html': slow(3, html('late')),
            '/busy.html': once_then((429, {'Retry-After': '1'}, b'later'), html('<img src="/img/4.png">')),
            '/flaky.html': once_then((500, {}, b'oops'), html('<img src="/img/5.png">')),
            '/broken.html': html(
                '<html><body><div><p><table><a href="/gallery.html"><img src="/img/3.png" alt="x"><img src=/img/0.png>',
                '</span></td></b><<<>>><!-- unclosed comment <a href="/never.html">',
            ),
            '/notes.txt': (200, {'Content-Type': 'text/plain'}, b'not an image'),
            '/big.png': (200, {'Content-Type': 'image/png'}, b'\x89PNG' + b'0' * 300_000),
            '/big-stream.png': (200, {'Content-Type': 'image/png', '_stream': '1'}, b'\x89PNG' + b'0' * 300_000),
            **{f'/img/{i}.png': image(IMG[i]) for i in range(9)},
            '/copy/1.png': image(IMG[1]),
        }
    )
    yield s
    s.close()


POLITE = dict(delay=0, timeout=1.0, retries=2, backoff=0.05, max_bytes=200_000, max_depth=2)


def test_crawl_is_polite_and_stores_each_image_once_with_provenance(site, tmp_path):
    s = make_settings(tmp_path, MLPROJ_COLLECT_STATE=str(tmp_path / 'crawls'))
    r = crawl(s, site.url + '/', progress=False, **POLITE)
    store = Store(s.store_url)
    stored = {d for d in (sha256(b) for b in IMG.values()) if store.exists(store.path('raw', d[:2], d))}
    # images 0-6 are stored once (1 also found as /copy/1.png: a duplicate); 7 and 8 lie too deep, 9 behind robots.txt
    assert stored == {sha256(IMG[i]) for i in range(7)}
    assert r['stored'] == 7 and r['duplicate'] == 1
    assert r['robots'] == 2 and not [e for e in site.log if e[0].startswith('/private/')]
    assert r['errors'] == {'redirect loop': 1, 'too large': 2, 'timeout': 1, 'http 404': 1}
    assert r['type'] == 1 and r['page'] == 6  # /, gallery, deep/1 (depth 2), busy, flaky, broken
    assert not site.hits('/deep/2.html') and not site.hits('/never.html')
    assert len(site.hits('/robots.txt')) == 1
    assert {e[3] for e in site.log} == {'mlproj-collect/1.0 (+mailto:data@mlproj.invalid)'}
    # 429 with Retry-After: 1 -> the second request came at least a second later; a 500 is retried to its 200
    busy = site.hits('/busy.html')
    assert [e[1] for e in busy] == [429, 200] and busy[1][2] - busy[0][2] >= 0.95
    assert [e[1] for e in site.hits('/flaky.html')] == [500, 200]
    assert len(site.hits('/slow.html')) == 3  # the first try and two retries, each given up after the timeout
    prov = item_provenance(store, sha256(IMG[2]))
    assert prov['source'] == site.url + '/img/2.png' and prov['found_on'] == site.url + '/gallery.html'
    assert prov['status'] == 200 and prov['media_type'] == 'image/png'
    assert prov['headers']['ETag'] == f'"{sha256(IMG[2])[:8]}"' and prov['headers']['Last-Modified'].startswith(
        'Mon, 02 Nov 2026'
    )
    # every URL that answered 200 in time was fetched once (the slow page answers after the crawler gave up on it)
    ok = [e[0] for e in site.log if e[1] == 200 and e[0] != '/slow.html']
    assert len(ok) == len(set(ok))
    # a second run finds the job done: nothing fetched, nothing stored
    n = len(site.log)
    r2 = crawl(s, site.url + '/', progress=False, **{**POLITE, 'retries': 0, 'timeout': 0.2})
    assert r2['stored'] == 7 and [e[0] for e in site.log[n:]] == [
        '/slow.html'
    ]  # only the timed-out page is tried again


def test_rate_limit_spaces_requests_to_a_host(tmp_path):
    site = Site(
        {
            '/robots.txt': (404, {}, b''),
            '/': html(*(f'<a href="/p{i}.html">p</a>' for i in range(5))),
            **{f'/p{i}.html': html('page') for i in range(5)},
        }
    )
    try:
        r = crawl(
            make_settings(tmp_path, MLPROJ_COLLECT_STATE=str(tmp_path / 'crawls')),
            site.url + '/',
            progress=False,
            **{**POLITE, 'delay': 0.3},
        )
        assert r['page'] == 6
        times = [e[2] for e in site.log]
        # the crawler spaces the requests it sends by 0.3 s; the server sees them arrive with some jitter under load,
        # so allow 0.1 s of it per gap: an unthrottled crawl of 7 requests arrives within a few ms of each other
        gaps = [b - a for a, b in zip(times, times[1:])]
        assert len(times) == 7 and min(gaps) >= 0.2 and times[-1] - times[0] >= 6 * 0.3 - 0.1, gaps
    finally:
        site.close()


def test_crawl_killed_with_sigkill_resumes_without_fetching_or_storing_twice(tmp_path):
    release = threading.Event()

    def hold(site):
        release.wait(30)
        return html('<img src="/h.png">')

    imgs = {f'/i/{p}-{k}.png': png(p * 10 + k + 1) for p in range(6) for k in range(3)}
    routes = {
        '/robots.txt': (200, {'Content-Type': 'text/plain'}, b'User-agent: *\nAllow: /\n'),
        '/': html(
            '<a href="/p0.html">0</a><a href="/p1.html">1</a><a href="/hold.html">h</a>',
            '<a href="/p2.html">2</a><a href="/p3.html">3</a><a href="/p4.html">4</a><a href="/p5.html">5</a>',
        ),
        '/hold.html': hold,
        '/h.png': image(png(200)),
        **{f'/p{p}.html': html(*(f'<img src="/i/{p}-{k}.png">' for k in range(3))) for p in range(6)},
        **{path: image(b) for path, b in imgs.items()},
    }
    site = Site(routes)
    env = {
        **os.environ,
        'MLPROJ_PATHS_STORE': str(tmp_path / 'store'),
        'MLPROJ_PATHS_REPORTS': str(tmp_path / 'r'),
        'MLPROJ_COLLECT_DELAY': '0',
        'MLPROJ_COLLECT_TIMEOUT': '30',
    }
    state = tmp_path / 'frontier.sqlite'
    argv = [MLPROJ, 'collect', 'crawl', site.url + '/', '--state', str(state), '-q']
    try:
        with open(tmp_path / 'first.log', 'w') as log:
            proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=log, stderr=log)
        wait_until(
            lambda: site.hits('/hold.html') or proc.poll() is not None,
            60,
            0.05,
            what='the crawler asking for /hold.html',
        )
        assert site.hits('/hold.html'), (tmp_path / 'first.log').read_text()
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        release.set()
        before = len(site.log)
        assert before >= 4  # robots.txt, /, p0, p1 at least
        r = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert '19 images stored, 0 duplicates' in r.stdout, r.stdout
    finally:
        release.set()
        site.close()
    # every path answered 200 once, except the page held when the crawler was killed (its answer never reached it)
    ok = [e[0] for e in site.log if e[1] == 200 and e[0] != '/hold.html']
    assert len(ok) == len(set(ok)) and set(ok) == set(routes) - {'/hold.html'}
    assert len(site.hits('/robots.txt')) == 1
    store = Store(str(tmp_path / 'store'))
    raw = [p for p in store.fs.find(store.path('raw')) if not p.endswith('.json')]
    assert len(raw) == 19 and not [p for p in store.fs.find(store.path('raw')) if '.tmp-' in p]
    with sqlite3.connect(state) as db:
        assert db.execute("SELECT count(*) FROM urls WHERE state = 'stored'").fetchone()[0] == 19


def test_bad_input_gets_one_line_and_loses_nothing(tmp_path):
    env = {
        'PATH': '/usr/bin:/bin',
        'MLPROJ_TASK_NAME': 'digits',  # the fixture's models and the assertions are the digits' (any project task)
        'MLPROJ_PATHS_STORE': str(tmp_path / 'store'),
        'MLPROJ_PATHS_REPORTS': str(tmp_path / 'r'),
        'MLPROJ_COLLECT_STATE': str(tmp_path / 'crawls'),
        'MLPROJ_COLLECT_RETRIES': '1',
        'MLPROJ_COLLECT_BACKOFF': '0.05',
    }
    with socket_closed() as port:
        for args in [
            ('collect', 'crawl', f'http://127.0.0.1:{port}/', '-q'),
            ('collect', 'crawl', 'ftp://example.org/digits'),
            ('collect', 'crawl', 'not a url'),
        ]:
            r = _cli(env, *args)
            assert r.returncode == 1 and r.stderr.count('\n') == 1 and r.stderr.startswith('mlproj: error: '), (
                args,
                r.stderr,
            )
    assert 'could not reach' in _cli(env, 'collect', 'crawl', f'http://127.0.0.1:{port}/', '-q').stderr
    assert not [p for p in (tmp_path / 'store').rglob('*') if p.is_file()]  # nothing stored


class socket_closed:
    "A port of 127.0.0.1 that nothing listens on."

    def __enter__(self):
        return free_port()

    def __exit__(self, *a):
        return False
