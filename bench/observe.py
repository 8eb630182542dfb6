"""The cost of deploy/observe.py's middleware (request id, metrics, JSON access log) on POST /predict: the same app
with and without it, side by side.

Two measures. In process (the default, and the one to trust on a shared machine): the ASGI app is called directly,
blocks of requests alternating between the variants, and the CPU time of this process per request is compared (CPU
time is what the middleware adds; other processes on the cores barely change it). Over HTTP (`--http`): each variant
served by uvicorn in turn, wrk at 32 connections, interleaved rounds; on a loaded machine its noise exceeds the effect.

    .venv/bin/python bench/observe.py [--http]   (uses the project's store: run `mlproj demo` or `mlproj release` first)
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import sys
from pathlib import Path

from common import ROOT, ROUNDS, SECONDS, Server, free_port, load, uvicorn_argv


def need_model():
    "Exit with one line saying what to do when the project's store has no model to serve (both measures load one)."
    from deploy.serving import load_model
    from mlproj.settings import load_settings

    logging.getLogger('deploy.serving').disabled = True  # its error is the line below
    _, model, error = load_model(load_settings(), os.environ.get('MLPROJ_MODEL') or None)
    logging.getLogger('deploy.serving').disabled = False
    if model is None:
        sys.exit(f'bench/observe.py: {error} (or `make demo`)')


def bare():
    "The served app without the Observe middleware (and so without request ids, metrics and access log)."
    from deploy.app import app_from_env
    from deploy.observe import Observe

    api = app_from_env()
    api.user_middleware = [m for m in api.user_middleware if m.cls is not Observe]
    return api


def observed():
    "The served app as `mlproj serve` builds it."
    from deploy.app import app_from_env

    return app_from_env()


VARIANTS = {
    'bare': ('observe:bare', []),
    'metrics, id': ('observe:observed', []),
    'metrics, id, JSON access log': (
        'observe:observed',
        ['--log-config', str(ROOT / 'deploy' / 'logging.json'), '--log-level', 'info'],
    ),
}


async def _asgi_cpu(apps: dict, body: bytes, blocks: int = 30, per_block: int = 200) -> dict:
    "{variant: [CPU microseconds per request, one per block]}: POST /predict through each app, blocks alternating."
    import contextlib
    import time

    headers = [
        (b'host', b'bench'),
        (b'content-type', b'application/json'),
        (b'content-length', str(len(body)).encode()),
    ]

    async def receive():
        return {'type': 'http.request', 'body': body, 'more_body': False}

    async def send(message):
        if message['type'] == 'http.response.start':
            assert message['status'] == 200, message

    def scope():
        return {
            'type': 'http',
            'asgi': {'version': '3.0'},
            'http_version': '1.1',
            'method': 'POST',
            'scheme': 'http',
            'path': '/predict',
            'raw_path': b'/predict',
            'query_string': b'',
            'root_path': '',
            'headers': headers,
            'client': ('127.0.0.1', 1),
            'server': ('127.0.0.1', 8000),
        }

    out = {k: [] for k in apps}
    async with contextlib.AsyncExitStack() as stack:
        for app, _ in apps.values():
            await stack.enter_async_context(app.router.lifespan_context(app))
        for b in range(blocks + 1):
            for name, (app, log_on) in apps.items():
                logging.getLogger('mlproj.access').disabled = not log_on
                t = time.process_time()
                for _ in range(per_block):
                    await app(scope(), receive, send)
                if b:
                    out[name].append((time.process_time() - t) / per_block * 1e6)  # block 0 warms up
    return out


def in_process():
    "CPU per /predict in this process: the app without Observe, with it, and with its JSON access log on (to /dev/null)."
    import asyncio

    from deploy.app import create_app
    from deploy.observe import JsonFormatter, Observe
    from mlproj.settings import load_settings

    handler = logging.FileHandler('/dev/null')
    handler.setFormatter(JsonFormatter())
    access = logging.getLogger('mlproj.access')
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    access.propagate = False
    settings = load_settings(env={**os.environ, 'MLPROJ_SERVING_RELOAD_SECONDS': '0'})
    bare_app = create_app(settings)
    bare_app.user_middleware = [m for m in bare_app.user_middleware if m.cls is not Observe]
    apps = {
        'bare': (bare_app, False),
        'metrics, id': (create_app(settings), False),
        'metrics, id, JSON access log': (create_app(settings), True),
    }
    body = json.dumps({'pixels': [[0, 0, 5, 13, 9, 1, 0, 0] * 8]}).encode()
    us = asyncio.run(_asgi_cpu(apps, body))
    base, medians = _medians(us)
    print(f'{"variant (in process)":30}  {"CPU us per /predict (median)":>28}  {"added us":>8}  {"ratio":>6}')
    for name, m in medians:
        print(f'{name:30}  {m:>28.1f}  {m - base:>8.1f}  {m / base:>6.3f}')
    return us


def _medians(samples: dict) -> tuple[float, list]:
    "The bare variant's median and (variant, median) of each, for the tables both measurements print."
    return statistics.median(samples['bare']), [(name, statistics.median(xs)) for name, xs in samples.items()]


def main(rounds: int = ROUNDS, seconds: float = SECONDS):
    "Requests per second over HTTP, each variant served by uvicorn in turn."
    body = json.dumps({'pixels': [[0, 0, 5, 13, 9, 1, 0, 0] * 8]}).encode()
    rps = {k: [] for k in VARIANTS}
    for r in range(rounds):
        for name, (app, extra) in VARIANTS.items():
            port = free_port()
            argv = [a for a in uvicorn_argv(app, port) if a not in ('--log-level', 'warning')] + (
                extra or ['--log-level', 'warning']
            )
            with Server(argv, port, ready='/ready', log=Path('/dev/null')) as s:
                load(f'{s.url}/predict', body, 'application/json', 32, 1)  # warm up
                rps[name].append(load(f'{s.url}/predict', body, 'application/json', 32, seconds)['rps'])
            print(f'round {r + 1}: {name}: {rps[name][-1]:.0f} req/s', file=sys.stderr, flush=True)
    base, medians = _medians(rps)
    print(f'{"variant":30}  {"req/s (median)":>14}  {"ratio to bare":>13}  {"us per request added":>20}')
    for name, m in medians:
        print(f'{name:30}  {m:>14.0f}  {m / base:>13.3f}  {1e6 / m - 1e6 / base:>20.1f}')
    return rps


if __name__ == '__main__':
    need_model()
    main() if '--http' in sys.argv else in_process()
