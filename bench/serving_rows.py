"""Serving a row task (wine): `POST /predict` with JSON rows against its no-op twin (`/noop` in serve_app.py: the same
body read by the same decoder, an answer of the same shape written by the same encoder, no row checks, no
preprocessing and no model), one row and 256 rows a request, measured side by side in interleaved rounds.

    .venv/bin/python bench/serving_rows.py          (BENCH_SECONDS, BENCH_ROUNDS as for the other benchmarks)

Prints rows/s of each and their ratio, the median over rounds."""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROUNDS, SECONDS, Server, load, register, settings_for, uvicorn_argv

from mlproj.console import free_port
from mlproj.settings import to_env


def main() -> dict:
    from mlproj.data import benchmark_version, load_split
    from mlproj.store import Store
    from mlproj.task import load_task
    from mlproj.train import config_from_settings, train

    work = Path(tempfile.mkdtemp(prefix='bench-rows-'))
    settings = settings_for(work, MLPROJ_TASK_NAME='wine')
    task = load_task('wine')
    vid = benchmark_version(settings)
    run = work / 'run'
    train(config_from_settings(settings, vid, run, max_epochs=20, wandb_mode='disabled', progress=False))
    version = register(settings, run)
    X, _ = load_split(Store(settings.store_url), vid, 'test')
    rows = [task.render(x) for x in X]
    bodies = {
        1: json.dumps({'rows': rows[:1]}).encode(),
        256: json.dumps({'rows': (rows * (256 // len(rows) + 1))[:256]}).encode(),
    }
    port = free_port()
    env = {**to_env(settings), 'MLPROJ_SERVING_MODEL': str(version)}
    figures = {}
    with Server(uvicorn_argv('serve_app:app', port), port, env=env, ready='/ready') as srv:
        for n, body in bodies.items():
            c = 32 if n == 1 else 4
            per = {'predict': [], 'noop': []}
            for i in range(ROUNDS):
                for route in ('predict', 'noop') if i % 2 == 0 else ('noop', 'predict'):
                    per[route].append(load(f'{srv.url}/{route}', body, 'application/json', c, SECONDS)['rps'] * n)
            ratio = statistics.median(p / q for p, q in zip(per['predict'], per['noop']))
            figures[n] = dict(
                predict=round(statistics.median(per['predict'])),
                noop=round(statistics.median(per['noop'])),
                ratio=round(ratio, 3),
            )
            print(
                f'wine rows, {n:>3} a request, {c} connections: /predict {figures[n]["predict"]:,} rows/s, '
                f'no-op twin {figures[n]["noop"]:,} rows/s: {ratio:.2f}x'
            )
    return figures


if __name__ == '__main__':
    import argparse

    argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0].replace('\n', ' '),
        epilog="BENCH_SECONDS and BENCH_ROUNDS set each measurement's length and the rounds (bench/common.py).",
    ).parse_args()
    main()
