"""P2 (or P1: `--images 1`) of several trees side by side: `python bench/trees.py REF [REF ...]` (commits, or folders holding a tree).

Every tree's server is up at once (its own `bench/serve_app.py`, or this one for a tree without it, on one registered
model), and the load goes to one at a time, in each round in the order A B .. B A (then reversed), so the drift of 2
shared cores cancels in the medians. For each tree and body format: requests a second, images a second against
onnxruntime in-process (P2's ratio in `make bench`), the server's CPU time a request, and both against the first tree.
Narrower and quicker than `make bench BENCH_ARGS=--baseline REF`: the question "did this change slow /predict down?".
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: its siblings import as plain modules
import numpy as np
from common import BENCH, ROOT, Server, cpu_seconds, free_port, load, register, settings_for, uvicorn_argv

FORMATS = {'npy': 'application/x-npy', 'raw': 'application/octet-stream', 'json': 'application/json'}


def unpack(ref: str, into: Path) -> Path:
    "The tree of `ref`: a folder as it is, else the commit unpacked into `into`."
    if Path(ref).is_dir():
        return Path(ref).resolve()
    into.mkdir(parents=True)
    subprocess.run(f'git -C {ROOT} archive --format=tar {shlex.quote(ref)} | tar -x -C {into}', shell=True, check=True)
    return into


def bodies(x: np.ndarray) -> dict:
    "The batch `x` in each format /predict reads."
    buf = io.BytesIO()
    np.save(buf, x.astype(np.uint8), allow_pickle=False)
    return dict(
        npy=buf.getvalue(),
        raw=x.astype(np.uint8).tobytes(),
        json=json.dumps({'pixels': x.astype(int).reshape(len(x), 64).tolist()}).encode(),
    )


def server(tree: Path, port: int, env: dict, log: Path) -> Server:
    "uvicorn serving `tree`'s app (its own code first on the path, run from its folder, as its `make bench` would)."
    argv = uvicorn_argv('serve_app:app', port)
    app_dir = tree / 'bench' if (tree / 'bench' / 'serve_app.py').exists() else BENCH
    argv[argv.index('--app-dir') + 1] = str(app_dir)
    argv[argv.index('--http') + 1] = (
        'deploy.protocol:HeaderTimeout' if (tree / 'deploy/protocol.py').exists() else 'httptools'
    )
    cmd = f'cd {shlex.quote(str(tree))} && exec ' + ' '.join(map(shlex.quote, argv))
    return Server(['sh', '-c', cmd], port, {**env, 'PYTHONPATH': str(tree)}, log=log)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        'refs', nargs='+', help='commits or tree folders; the first is the one the others are compared with'
    )
    ap.add_argument('--formats', default='npy,raw', help='comma-separated body formats: npy, raw, json')
    ap.add_argument('--rounds', type=int, default=3, help='rounds, each tree measured twice a round (A B .. B A)')
    ap.add_argument('--seconds', type=float, default=3, help='length of each load run')
    ap.add_argument('--epochs', type=int, default=5, help='epochs of the model the servers load')
    ap.add_argument('--images', type=int, default=256, help='images a request: 256 is P2, 1 is P1')
    ap.add_argument('--connections', type=int, default=4, help='concurrent connections of the load')
    ap.add_argument('--out', help='write the figures to this JSON file')
    args = ap.parse_args(argv)
    os.environ.setdefault('WANDB_SILENT', 'true')
    from serving import in_process

    from mlproj.data import benchmark_version, load_split
    from mlproj.registry import Registry
    from mlproj.store import Store
    from mlproj.train import config_from_settings, train

    with tempfile.TemporaryDirectory(prefix='mlproj-trees-') as tmp, ExitStack() as stack:
        work = Path(tmp)
        trees = {ref: unpack(ref, work / f'tree{i}') for i, ref in enumerate(args.refs)}
        settings = settings_for(work)
        vid = benchmark_version(settings)
        run = work / 'runs' / 'served'
        train(config_from_settings(settings, vid, run, max_epochs=args.epochs, wandb_mode='disabled', progress=False))
        version = register(settings, run)
        bundle = Registry(Store(settings.store_url)).load(version)
        x, _ = load_split(Store(settings.store_url), bundle.manifest['dataset_version'], 'test')
        x = np.concatenate([x] * (args.images // len(x) + 1))[: args.images]
        body = bodies(x)
        env = {  # only what every tree's settings know: each reads the rest from its own settings.ini
            'MLPROJ_PATHS_STORE': str(work / 'store'),
            'MLPROJ_PATHS_REPORTS': str(work / 'reports'),
            'MLPROJ_SERVING_MODEL': str(version),
        }
        servers = {}
        for i, (ref, tree) in enumerate(trees.items()):
            port = free_port()
            servers[ref] = stack.enter_context(server(tree, port, env, work / f'server{i}.log'))
        time.sleep(1)
        rps, cpu, inproc = {}, {}, []
        for r in range(args.rounds):
            order = list(trees) if r % 2 == 0 else list(trees)[::-1]
            for f in args.formats.split(','):
                for ref in order + order[::-1]:
                    s = servers[ref]
                    before = cpu_seconds(s.proc.pid)
                    got = load(f'{s.url}/predict', body[f], FORMATS[f], args.connections, args.seconds, work=work)[
                        'rps'
                    ]
                    us = (cpu_seconds(s.proc.pid) - before) / (got * args.seconds) * 1e6
                    rps.setdefault((ref, f), []).append(got)
                    cpu.setdefault((ref, f), []).append(us)
                    print(
                        f'round {r + 1} {ref:>12} {f:<4} {got:8.1f} req/s {us:7.0f} us server CPU a request', flush=True
                    )
            inproc.append(in_process(bundle.onnx, x, settings.serving.threads, args.seconds))
            print(f'round {r + 1} onnxruntime in-process {inproc[-1]:,.0f} images/s', flush=True)
    ips = np.repeat(inproc, 2)  # each tree is measured twice a round
    first = args.refs[0]
    out = {}
    for f in args.formats.split(','):
        for ref in args.refs:
            v, c = np.array(rps[ref, f]), np.array(cpu[ref, f])
            out[f'{ref} {f}'] = row = dict(
                rps=float(np.median(v)),
                p2_ratio=float(np.median(v * args.images / ips)),
                cpu_us=float(np.median(c)),
                rps_vs_first=float(np.median(v / np.array(rps[first, f]))),
                cpu_vs_first=float(np.median(c / np.array(cpu[first, f]))),
            )
            print(
                f'{f:<4} {ref:>12}: {row["rps"]:7.1f} req/s, {row["p2_ratio"]:.2f}x in-process, '
                f'{row["cpu_us"]:5.0f} us CPU a request; against {first}: {row["rps_vs_first"]:.3f}x req/s, '
                f'{row["cpu_vs_first"]:.3f}x CPU'
            )
    if args.out:
        Path(args.out).write_text(json.dumps(dict(rounds=args.rounds, seconds=args.seconds, figures=out), indent=1))


if __name__ == '__main__':
    main()
