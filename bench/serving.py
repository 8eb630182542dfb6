"""P1, P2, the peer (LitServe) and multi-process serving: requests per second from wrk on loopback, as ratios."""
from __future__ import annotations

import io
import json
import sys
import time
from pathlib import Path

import numpy as np

from common import BENCH, ROUNDS, SECONDS, Server, free_port, load, uvicorn_argv


def _offers(url: str, media_type: str) -> bool:
    "Whether /predict's OpenAPI request body lists `media_type`."
    import httpx
    spec = httpx.get(f'{url}/openapi.json', timeout=10).json()
    return media_type in spec['paths']['/predict']['post'].get('requestBody', {}).get('content', {})


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
    "Every serving figure, measured side by side in this run."
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
    out = dict(body_bytes=dict(one=len(one), batch_json=len(batch)))

    def measure(name, url, body, ctype, c):
        r = load(url, body, ctype, c, work=work)
        log(f'  {name:<40} c={c:<3} {r["rps"]:>9.1f} req/s')
        out[name + f'_c{c}'] = max(out.get(name + f'_c{c}', 0), r['rps']) # the best round
        return r['rps']

    port = free_port()
    with Server(uvicorn_argv('serve_app:app', port), port, env, log=work / 'server.log') as s:
        npy = _offers(s.url, 'application/x-npy')
        for _ in range(ROUNDS): # interleaved rounds, the best of each kept: other load on the machine only lowers figures
            for c in (1, 32):
                measure('predict_one_json', f'{s.url}/predict', one, 'application/json', c)
                measure('noop_one_json', f'{s.url}/noop', one, 'application/json', c)
            measure('predict_batch256_json', f'{s.url}/predict', batch, 'application/json', 4)
            measure('noop_batch256_json', f'{s.url}/noop', batch, 'application/json', 4)
            if npy:
                out['body_bytes']['batch_npy'] = len(_npy(x))
                measure('predict_batch256_npy', f'{s.url}/predict', _npy(x), 'application/x-npy', 4)
            ips = in_process(bundle.onnx, x, settings.serving.threads)
            out['inprocess_batch256_images_s'] = max(out.get('inprocess_batch256_images_s', 0), ips)
            log(f"  {'onnxruntime in-process, batch 256':<46} {ips:>9.0f} images/s")

    port = free_port()
    with Server(uvicorn_argv('serve_app:app', port, workers=2), port, env, log=work / 'server2.log') as s:
        time.sleep(2) # both workers up
        measure('predict_one_json_2workers', f'{s.url}/predict', one, 'application/json', 32)

    onnx = work / 'served.onnx'
    onnx.write_bytes(bundle.onnx)
    port = free_port()
    with Server([sys.executable, str(BENCH / 'litserve_app.py'), str(onnx), str(port)], port, log=work / 'litserve.log') as s:
        for _ in range(ROUNDS):
            for c in (1, 32): measure('litserve_one_json', f'{s.url}/predict', one, 'application/json', c)
    return out
