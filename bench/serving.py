"""P1, P2, the peer (LitServe) and multi-process serving: requests per second from wrk on loopback, as ratios."""

from __future__ import annotations

import io
import json
import sys
import time
from pathlib import Path

import numpy as np
from common import BENCH, ROUNDS, SECONDS, Server, cpu_seconds, free_port, load, uvicorn_argv

P1_PAIRS = 3  # P1's load runs, each side, in a round: SECONDS in all, split


def _offers(url: str, media_type: str) -> bool:
    "Whether /predict's OpenAPI request body lists `media_type`."
    import httpx

    spec = httpx.get(f'{url}/openapi.json', timeout=10).json()
    return media_type in spec['paths']['/predict']['post'].get('requestBody', {}).get('content', {})


def _answers_in(url: str, media_type: str) -> bool:
    "Whether /predict's OpenAPI 200 answer lists `media_type` (a binary answer on request)."
    import httpx

    spec = httpx.get(f'{url}/openapi.json', timeout=10).json()
    return media_type in spec['paths']['/predict']['post']['responses'].get('200', {}).get('content', {})


def _npy(x: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, x.astype(np.uint8), allow_pickle=False)
    return buf.getvalue()


def in_process(onnx: bytes, x: np.ndarray, threads: int, seconds: float = SECONDS) -> float:
    "Images per second of onnxruntime called in this process on batch `x` (the Predictor the server uses)."
    from mlproj.predict import Predictor

    p = Predictor(onnx, threads=threads)
    p.probabilities(x)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        p.probabilities(x)
        n += 1
    return n * len(x) / (time.perf_counter() - start)


def run(settings, version: int, work: Path, log=print) -> dict:
    "Every serving figure, in interleaved rounds: all servers up at once, load on one at a time, so a ratio's two sides are measured minutes apart at most."
    from contextlib import ExitStack

    from mlproj.data import load_split
    from mlproj.registry import Registry
    from mlproj.settings import to_env
    from mlproj.store import Store

    bundle = Registry(Store(settings.store_url)).load(version)
    x, _ = load_split(Store(settings.store_url), bundle.manifest['dataset_version'], 'test')
    x = np.concatenate([x] * (256 // len(x) + 1))[:256]
    one = json.dumps({'pixels': x[0].astype(int).reshape(64).tolist()}).encode()
    batch = json.dumps({'pixels': x.astype(int).reshape(256, 64).tolist()}).encode()
    env = {**to_env(settings), 'MLPROJ_SERVING_MODEL': str(version)}
    out = dict(body_bytes=dict(one=len(one), batch_json=len(batch)), rounds={}, cpu_rounds={})
    onnx = work / 'served.onnx'
    onnx.write_bytes(bundle.onnx)

    pids = {}  # server url -> its pid: the server's CPU time a request, beside its requests a second

    def measure(name, url, body, ctype, c, accept='', seconds=SECONDS):
        pid = pids.get(url.rsplit('/', 1)[0])
        before = cpu_seconds(pid) if pid else 0.0
        r = load(url, body, ctype, c, seconds, work=work, accept=accept)
        out['rounds'].setdefault(f'{name}_c{c}', []).append(r['rps'])
        if not pid:
            return log(f'  {name:<40} c={c:<3} {r["rps"]:>9.1f} req/s')
        us = (cpu_seconds(pid) - before) / (r['rps'] * seconds) * 1e6
        out['cpu_rounds'].setdefault(f'{name}_c{c}', []).append(us)
        log(f'  {name:<40} c={c:<3} {r["rps"]:>9.1f} req/s {us:>7.0f} us server CPU a request')

    with ExitStack() as stack:
        ports = [free_port() for _ in range(3)]
        one_worker = stack.enter_context(
            Server(uvicorn_argv('serve_app:app', ports[0]), ports[0], env, log=work / 'server.log')
        )
        two_workers = stack.enter_context(
            Server(uvicorn_argv('serve_app:app', ports[1], workers=2), ports[1], env, log=work / 'server2.log')
        )
        lit = stack.enter_context(
            Server(
                [sys.executable, str(BENCH / 'litserve_app.py'), str(onnx), str(ports[2])],
                ports[2],
                log=work / 'litserve.log',
            )
        )
        time.sleep(2)  # both of the second server's workers up
        pids.update({s.url: s.proc.pid for s in (one_worker, two_workers)})
        npy = _offers(one_worker.url, 'application/x-npy')
        raw = _offers(one_worker.url, 'application/octet-stream')
        raw_out = _answers_in(one_worker.url, 'application/octet-stream')
        if npy:
            out['body_bytes']['batch_npy'] = len(_npy(x))
        if raw:
            out['body_bytes']['batch_raw'] = len(x.astype(np.uint8).tobytes())
        for _ in range(ROUNDS):
            for c in (1, 32):
                # P1 in short pairs, in turn first and second (ABBA): the two sides of each ratio seconds apart, so the
                # machine's drift (2 shared cores) cancels in the median of the pairs' ratios
                for i in range(P1_PAIRS):
                    for route in ('predict', 'noop') if i % 2 == 0 else ('noop', 'predict'):
                        measure(
                            f'{route}_one_json',
                            f'{one_worker.url}/{route}',
                            one,
                            'application/json',
                            c,
                            seconds=SECONDS / P1_PAIRS,
                        )
                measure('litserve_one_json', f'{lit.url}/predict', one, 'application/json', c)
            measure('predict_one_json_2workers', f'{two_workers.url}/predict', one, 'application/json', 32)
            measure('predict_batch256_json', f'{one_worker.url}/predict', batch, 'application/json', 4)
            measure('noop_batch256_json', f'{one_worker.url}/noop', batch, 'application/json', 4)
            if npy:
                measure('predict_batch256_npy', f'{one_worker.url}/predict', _npy(x), 'application/x-npy', 4)
            if raw:
                measure(
                    'predict_batch256_raw',
                    f'{one_worker.url}/predict',
                    x.astype(np.uint8).tobytes(),
                    'application/octet-stream',
                    4,
                )
            if raw_out:
                measure(
                    'predict_batch256_rawio',
                    f'{one_worker.url}/predict',
                    x.astype(np.uint8).tobytes(),
                    'application/octet-stream',
                    4,
                    accept='application/octet-stream',
                )  # raw counts in, raw float32 probabilities out
            ips = in_process(bundle.onnx, x, settings.serving.threads)
            out['rounds'].setdefault('inprocess_batch256_images_s', []).append(ips)
            log(f'  {"onnxruntime in-process, batch 256":<46} {ips:>9.0f} images/s')
    out.update({k: float(np.median(v)) for k, v in out['rounds'].items()})
    out['cpu_us'] = {k: float(np.median(v)) for k, v in out['cpu_rounds'].items()}  # medians over rounds
    return out
