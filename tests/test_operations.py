"""Operations: Prometheus metrics, request ids in JSON logs, SIGTERM draining the requests in flight, several workers."""

import json
import logging
import re
import signal
import socket
import time
from pathlib import Path

import httpx
from conftest import ServerProcess, free_port, make_settings, serving_env, wait_until
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from test_release_reload import PIXELS, _store_with_two_versions

from deploy.app import create_app
from deploy.observe import JsonFormatter, request_id
from mlproj.console import serve_argv


def _samples(text: str) -> dict:
    "{(sample name, frozenset of labels): value} from the Prometheus text format."
    return {
        (s.name, frozenset(s.labels.items())): s.value for f in text_string_to_metric_families(text) for s in f.samples
    }


def test_metrics_count_requests_predictions_and_the_model_served(trained, tmp_path):
    _store_with_two_versions(trained, tmp_path)
    s = make_settings(tmp_path, MLPROJ_SERVING_MODEL='production', MLPROJ_SERVING_RELOAD_SECONDS='0')
    with TestClient(create_app(s)) as c:
        r = c.post('/predict', json={'pixels': [PIXELS['pixels']] * 3})
        assert r.status_code == 200
        labels = [p['label'] for p in r.json()['predictions']]
        assert c.get('/health').status_code == 200
        assert c.get('/no/such/page').status_code == 404
        assert c.post('/predict', json={'pixels': [1, 2]}).status_code == 422
        m = _samples(c.get('/metrics').text)
    req = lambda route, method, status: m[
        ('mlproj_http_requests_total', frozenset(dict(route=route, method=method, status=status).items()))
    ]
    assert req('/predict', 'POST', '200') == 1 and req('/predict', 'POST', '422') == 1
    assert req('/health', 'GET', '200') == 1 and req('unmatched', 'GET', '404') == 1  # never the raw path
    assert (
        m[
            (
                'mlproj_http_request_duration_seconds_count',
                frozenset(dict(route='/predict', method='POST', status='200').items()),
            )
        ]
        == 1
    )
    assert m[('mlproj_predictions_total', frozenset({('label', str(labels[0]))}))] == 3
    assert m[('mlproj_model_version', frozenset())] == 1
    assert m[('mlproj_model_load_failures_total', frozenset())] == 0


def test_metrics_count_load_failures(trained, tmp_path):
    _store_with_two_versions(trained, tmp_path)
    s = make_settings(tmp_path, MLPROJ_SERVING_RELOAD_SECONDS='0')
    with TestClient(create_app(s, model_ref='9')) as c:  # no version 9
        assert c.get('/ready').status_code == 503
        m = _samples(c.get('/metrics').text)
    assert m[('mlproj_model_load_failures_total', frozenset())] == 1 and m[('mlproj_model_version', frozenset())] == 0


def test_request_id_is_taken_from_the_client_or_made_and_returned(trained, tmp_path, caplog):
    _store_with_two_versions(trained, tmp_path)
    with (
        TestClient(create_app(make_settings(tmp_path, MLPROJ_SERVING_RELOAD_SECONDS='0'))) as c,
        caplog.at_level(logging.INFO, 'mlproj.access'),
    ):
        assert c.get('/health', headers={'X-Request-ID': 'abc-123'}).headers['x-request-id'] == 'abc-123'
        made = c.get('/health').headers['x-request-id']
        assert re.fullmatch('[0-9a-f]{32}', made)
        bad = c.get('/health', headers={'X-Request-ID': 'has spaces and "quotes"'}).headers['x-request-id']
        assert re.fullmatch('[0-9a-f]{32}', bad)  # replaced, not echoed into the logs
        assert c.post('/predict', json={}, headers={'X-Request-ID': 'r2'}).headers['x-request-id'] == 'r2'  # errors too
    lines = [r for r in caplog.records if r.name == 'mlproj.access']
    assert [(r.route, r.status) for r in lines] == [('/health', 200)] * 3 + [('/predict', 422)]


def test_json_log_lines_carry_the_request_id():
    rec = logging.LogRecord('mlproj.access', logging.INFO, __file__, 1, 'GET %s %d', ('/health', 200), None)
    rec.route, rec.status, rec.ms = '/health', 200, 0.5
    token = request_id.set('abc')
    try:
        line = json.loads(JsonFormatter().format(rec))
    finally:
        request_id.reset(token)
    assert {k: line[k] for k in ('level', 'logger', 'message', 'request_id', 'route', 'status', 'ms')} == dict(
        level='INFO',
        logger='mlproj.access',
        message='GET /health 200',
        request_id='abc',
        route='/health',
        status=200,
        ms=0.5,
    )
    assert 'request_id' not in json.loads(JsonFormatter().format(rec))  # outside a request


def _start(tmp: Path, workers: int = 1, **env) -> ServerProcess:
    "`mlproj serve`'s command (deploy.serve, JSON logs) on a free port, serving production from tmp/store."
    port = free_port()
    return ServerProcess(
        serve_argv('127.0.0.1', port, workers),
        serving_env(tmp / 'store', tmp / 'reports', **{'MLPROJ_SERVING_MODEL': 'production', **env}),
        url=f'http://127.0.0.1:{port}',
    )


def test_sigterm_drains_a_request_in_flight_and_exits_0(trained, tmp_path):
    _store_with_two_versions(trained, tmp_path)
    with _start(tmp_path) as srv:
        body = json.dumps(PIXELS).encode()
        with socket.create_connection(('127.0.0.1', srv.port)) as s:
            s.sendall(
                b'POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Request-ID: slow-1\r\n'
                b'Content-Length: %d\r\n\r\n' % len(body) + body[:10]
            )  # the request is in flight: half its body sent
            time.sleep(0.5)
            srv.send_signal(signal.SIGTERM)
            time.sleep(1.0)
            assert srv.proc.poll() is None, srv.log  # waiting for the request, not gone
            s.sendall(body[10:])
            s.settimeout(30)
            answer = b''
            while chunk := s.recv(65536):
                answer += chunk  # the server closes the connection after answering: it is stopping
        head, _, payload = answer.partition(b'\r\n\r\n')
        assert head.startswith(b'HTTP/1.1 200'), answer
        assert json.loads(payload)['model_version'] == 1
        assert srv.stop() == 0, srv.log
        log = srv.lines
    records = [json.loads(l) for l in log if l.startswith('{')]
    assert len(records) == len(log), log  # every line is JSON
    slow = [r for r in records if r.get('request_id') == 'slow-1' and r['logger'] == 'mlproj.access']
    assert slow and slow[0]['status'] == 200 and slow[0]['route'] == '/predict', records
    assert any('Application shutdown complete' in r['message'] for r in records)


def _versions_by_pid(m: dict) -> dict:
    return {dict(labels)['pid']: v for (name, labels), v in m.items() if name == 'mlproj_model_version'}


def test_serve_workers_answer_and_add_up_their_metrics(trained, tmp_path):
    _store_with_two_versions(trained, tmp_path)
    with _start(tmp_path, workers=2) as srv, httpx.Client(base_url=srv.url) as c:
        # /ready answered from one worker; the other may still be loading its model
        seen = {}

        def both_serve_1() -> bool:  # each worker reports the version it serves, 0 until loaded
            seen.update(versions=_versions_by_pid(_samples(c.get('/metrics').text)))
            return list(seen['versions'].values()) == [1, 1]

        try:
            wait_until(both_serve_1, 60, 0.2, what='both workers serving version 1')
        except TimeoutError:
            raise AssertionError((seen, srv.log)) from None
        for _ in range(20):
            assert c.post('/predict', json=PIXELS).status_code == 200
        m = _samples(c.get('/metrics').text)
        n = sum(
            v
            for (name, labels), v in m.items()
            if name == 'mlproj_http_requests_total' and ('route', '/predict') in labels
        )
        assert n == 20, m  # whichever worker answers the scrape, it counts every worker's requests
        assert srv.stop(timeout=60) == 0, srv.log
