"""What a client can fake, over real HTTP (`python -m deploy.serve` in a subprocess, as `mlproj serve` runs it): a run id
that is a path, an X-Forwarded-For header, and what the pages may run (their Content-Security-Policy)."""

import base64
import hashlib
import json
import re
import subprocess

import httpx
import pytest
from conftest import ROOT, ServerProcess, serving_env
from test_api import server_env

from mlproj.console import serve_argv
from mlproj.redis_server import EmbeddedServer  # only-with: queue

TOKEN = {'Authorization': 'Bearer s3cret'}


@pytest.fixture(scope='module')
def served(trained, tmp_path_factory):
    "A server with a queue (an embedded Redis), a token, reports in <tmp>/deep/reports and a run.json planted at <tmp>/x."
    tmp = tmp_path_factory.mktemp('fakes')
    outside = tmp / 'x'  # what reports/runs/../../../x names
    outside.mkdir()
    (outside / 'run.json').write_text(
        json.dumps(dict(run_id='x', job='noop', state='done', parameters={'echo': 'outside'}))
    )
    runs = tmp / 'deep' / 'reports' / 'runs'
    for rid in ('20260101-000000-train-aaaaaa', '20260102-000000-evaluate-bbbbbb'):
        (runs / rid).mkdir(parents=True)
        (runs / rid / 'run.json').write_text(
            json.dumps(dict(run_id=rid, job=rid.split('-')[2], state='done', parameters={}, report='report.html'))
        )
        (runs / rid / 'report.html').write_text(
            '<!doctype html><title>r</title><p>a report</p><script>document.title = "ran"</script>'
        )
    stops, queue = [], {}
    # begin-only-with: queue
    redis = EmbeddedServer(tmp / 'q').start()
    stops.append(redis.stop)
    queue['MLPROJ_QUEUE_URL'] = redis.url
    # end-only-with: queue
    env = server_env(
        trained,
        tmp / 'deep',
        MLPROJ_MODEL='1',
        MLPROJ_API_TOKENS='ci:s3cret',
        MLPROJ_SERVING_CORRECTIONS_PER_MINUTE='2',
        **queue,
    )
    try:
        with ServerProcess(serve_argv('127.0.0.1', 0), env) as srv:
            srv.tmp = tmp
            yield srv
    finally:
        for stop in stops:
            stop()


# begin-only-with: queue
# ---------------------------------------------------------------- a run id is a name


@pytest.mark.parametrize('rerun', ['../../../x', '/etc', '..', 'a/b', '.hidden'])
def test_a_rerun_of_a_path_is_refused_before_anything_is_read(served, rerun):
    r = httpx.post(f'{served.url}/jobs', json={'rerun': rerun}, headers=TOKEN, timeout=30)
    assert r.status_code == 422 and 'not a path' in r.text, r.text
    assert not [j for j in httpx.get(f'{served.url}/jobs', headers=TOKEN, timeout=30).json() if j['rerun_of'] == rerun]


def test_a_job_name_that_is_a_path_is_refused(served):
    r = httpx.post(f'{served.url}/jobs', json={'job': '../train', 'parameters': {}}, headers=TOKEN, timeout=30)
    assert r.status_code == 422 and 'not a path' in r.text, r.text


def test_refusals_name_the_run_id_not_the_servers_folders(served):
    r = httpx.post(f'{served.url}/jobs', json={'rerun': '20260103-000000-train-cccccc'}, headers=TOKEN, timeout=30)
    assert r.status_code == 422 and "no run '20260103-000000-train-cccccc'" in r.text, r.text
    assert str(served.tmp) not in r.text and str(ROOT) not in r.text


def test_a_rerun_of_a_run_that_exists_is_still_queued(served):
    r = httpx.post(f'{served.url}/jobs', json={'rerun': '20260101-000000-train-aaaaaa'}, headers=TOKEN, timeout=30)
    assert r.status_code in (202, 422), r.text  # queued, or refused for its parameters, never for its id
    assert 'not a path' not in r.text and 'no run' not in r.text
    # end-only-with: queue


# ---------------------------------------------------------------- X-Forwarded-For


def corrections(url: str, forwarded_for: list[str]) -> list[int]:
    "The status of a correction (an empty one: the limit is checked first) sent with each X-Forwarded-For."
    return [
        httpx.post(
            f'{url}/corrections',
            content=b'x',
            headers={'Content-Type': 'text/plain', 'X-Forwarded-For': ip},
            timeout=30,
        ).status_code
        for ip in forwarded_for
    ]


def test_x_forwarded_for_from_an_untrusted_address_does_not_lift_the_corrections_limit(served):
    codes = corrections(served.url, ['10.0.0.1', '10.0.0.2', '10.0.0.3', '10.0.0.4'])
    assert codes[:2] == [415, 415] and codes[2:] == [429, 429]  # one client, 127.0.0.1, whatever the header says


def test_x_forwarded_for_from_a_trusted_proxy_names_the_client(trained, tmp_path):
    env = server_env(
        trained,
        tmp_path,
        MLPROJ_MODEL='1',
        MLPROJ_SERVING_CORRECTIONS_PER_MINUTE='2',
        MLPROJ_SERVING_TRUSTED_PROXIES='127.0.0.0/8, ::1',
    )
    with ServerProcess(serve_argv('127.0.0.1', 0), env) as srv:
        codes = corrections(srv.url, ['10.0.0.1', '10.0.0.2', '10.0.0.3', '10.0.0.1', '10.0.0.1'])
    assert codes == [415, 415, 415, 415, 429]  # each forwarded client has its own two a minute


def test_a_trusted_proxy_that_is_not_an_address_stops_the_server_with_one_line(tmp_path):
    env = serving_env(
        tmp_path / 'store', tmp_path / 'reports', MLPROJ_SERVING_TRUSTED_PROXIES='10.0.0.1, proxy.example'
    )
    r = subprocess.run(serve_argv('127.0.0.1', 0), env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "'proxy.example' is not an IP address or network" in r.stderr
    assert 'Traceback' not in r.stderr, r.stderr


# ---------------------------------------------------------------- Content-Security-Policy of the pages


def sources(policy: str, directive: str) -> list[str]:
    m = re.search(rf'(?:^|;)\s*{directive} ([^;]*)', policy)
    assert m, f'no {directive} in {policy!r}'
    return m[1].split()


def inline_scripts(html: str) -> list[str]:
    return [m[1] for m in re.finditer(r'<script>(.*?)</script>', html, re.DOTALL)]


def sha(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


@pytest.mark.parametrize('path', ['/score', '/reports/'])
def test_the_scoring_and_reports_pages_run_their_own_scripts_only(served, path):
    r = httpx.get(served.url + path, timeout=60)
    assert r.status_code == 200 and r.headers['content-type'].startswith('text/html')
    policy = r.headers['content-security-policy']
    scripts = sources(policy, 'script-src')
    assert scripts[0] == "'self'" and not any(s in scripts for s in ("'unsafe-inline'", "'unsafe-eval'", '*', 'https:'))
    own = inline_scripts(r.text)
    assert own and all(sha(s) in scripts for s in own)  # the page's own scripts run...
    assert sha('alert(1)') not in scripts  # ...and nothing else inline
    assert sources(policy, 'default-src') == ["'self'"] and sources(policy, 'connect-src') == ["'self'"]
    assert sources(policy, 'frame-ancestors') == ["'none'"] and sources(policy, 'base-uri') == ["'none'"]


def test_a_run_report_runs_no_inline_script_and_may_be_framed_by_the_index_only(served):
    r = httpx.get(f'{served.url}/reports/runs/20260101-000000-train-aaaaaa/report.html', timeout=30)
    assert r.status_code == 200
    policy = r.headers['content-security-policy']
    assert sources(policy, 'script-src') == ["'self'"] and sources(policy, 'frame-ancestors') == ["'self'"]


def test_the_pages_and_their_scripts_work_under_their_policy_in_a_browser(served, browser):
    "No CSP violation in Chromium; the reports index's script ran (two ticks show the runs side by side)."
    page = browser.new_page()
    problems = []
    page.on('console', lambda m: problems.append(m.text) if 'Content Security Policy' in m.text else None)
    page.route(re.compile(r'^(?!http://127\.0\.0\.1)'), lambda route: route.abort())  # no other origin
    try:
        page.goto(f'{served.url}/reports/')
        assert page.locator('#compare table').count() == 0
        for box in page.locator('input.pick').all()[:2]:
            box.check()
        page.wait_for_selector('#compare table.cmp')  # the index's inline script runs
        page.goto(f'{served.url}/score')
        page.wait_for_load_state('load')
        page.goto(f'{served.url}/reports/runs/20260101-000000-train-aaaaaa/report.html')
        assert page.title() == 'r'  # the report's inline script did not run...
    finally:
        page.close()
    assert len(problems) == 1 and 'script' in problems[0], problems  # ...and the browser says why, once
