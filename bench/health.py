"""Issues 6 and 23 (item 3): how long `/health` takes to answer while a 4 MB JSON body is being processed (goal: under
50 ms at its slowest). Such a body is parsed in a process of its own (`deploy.limits.Processes`): parsed by a thread, it
held the GIL, so the event loop and /health, for as long as the parse took (0.64 s seen).

One connection POSTs a 4 MB body of 3,200 images of float counts to /predict while another asks /health every 5 ms;
the figure is the slowest /health answer seen while the large request was in progress (median over rounds).

    python bench/health.py   (or as part of `make bench`)
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from pathlib import Path

import numpy as np
from common import ROUNDS, Server, free_port, uvicorn_argv


def body_4mb() -> bytes:
    "About 4 MB of JSON: 3,200 images of 64 random float counts (as tests/test_limits.py sends)."
    return json.dumps({'pixels': (np.random.default_rng(0).random((3200, 64)) * 16).tolist()}).encode()


def _probe(url: str, body: bytes) -> dict:
    "One round: the large POST on its own connection, /health every 5 ms on another until it has answered."
    host, port = url.removeprefix('http://').split(':')
    done, big = threading.Event(), {}

    def post():
        c = http.client.HTTPConnection(host, int(port), timeout=120)
        t = time.perf_counter()
        c.request('POST', '/predict', body, {'Content-Type': 'application/json'})
        r = c.getresponse()
        r.read()
        big.update(status=r.status, seconds=time.perf_counter() - t)
        done.set()

    h = http.client.HTTPConnection(host, int(port), timeout=120)
    h.request('GET', '/health')
    h.getresponse().read()  # connected and warm
    poster = threading.Thread(target=post)
    poster.start()
    lat = []
    while not done.is_set():
        t = time.perf_counter()
        h.request('GET', '/health')
        r = h.getresponse()
        r.read()
        if not done.is_set():
            lat.append(time.perf_counter() - t)  # answered while the large request was in progress
        time.sleep(0.005)
    poster.join()
    if big['status'] != 200:
        raise RuntimeError(f'the 4 MB request answered {big["status"]}')
    return dict(
        health_max_ms=max(lat, default=0) * 1e3,
        health_median_ms=float(np.median(lat or [0])) * 1e3,
        probes=len(lat),
        big_request_ms=big['seconds'] * 1e3,
    )


def run(env: dict, work: Path, rounds: int = ROUNDS, log=print) -> dict:
    "Every round's figures and their medians, from one server as `mlproj serve` runs it (max_batch raised for the 3,200 images)."
    body = body_4mb()
    port = free_port()
    out = dict(body_bytes=len(body), rounds=[])
    with Server(
        uvicorn_argv('serve_app:app', port),
        port,
        {**env, 'MLPROJ_SERVING_MAX_BATCH': '100000'},
        log=work / 'health-server.log',
    ) as server:
        _probe(server.url, body)  # warm: first-call costs out of the figures
        for _ in range(rounds):
            r = _probe(server.url, body)
            log(
                f'  /health while a {len(body) / 1e6:.1f} MB JSON body is processed: slowest {r["health_max_ms"]:.1f} ms, '
                f'median {r["health_median_ms"]:.1f} ms over {r["probes"]} probes; the large request took {r["big_request_ms"]:.0f} ms'
            )
            out['rounds'].append(r)
    for k in ('health_max_ms', 'health_median_ms', 'big_request_ms'):
        out[k] = float(np.median([r[k] for r in out['rounds']]))
    return out


if __name__ == '__main__':
    import sys
    import tempfile

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from common import register, settings_for

    from mlproj.data import benchmark_version
    from mlproj.settings import to_env
    from mlproj.train import config_from_settings, train

    with tempfile.TemporaryDirectory(prefix='mlproj-health-') as tmp:
        s = settings_for(Path(tmp))
        run_dir = Path(tmp) / 'runs' / 'health'
        train(
            config_from_settings(s, benchmark_version(s), run_dir, max_epochs=2, wandb_mode='disabled', progress=False)
        )
        print(json.dumps(run({**to_env(s), 'MLPROJ_SERVING_MODEL': str(register(s, run_dir))}, Path(tmp)), indent=1))
