"""`make bench`: every figure of issue 12 measured side by side in one run; ratios printed and written to reports/bench/.

python bench/run.py [--only training,jobs,lighten,serving,health,annotate] [--epochs 20] [--baseline COMMIT] [--out reports/bench]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: its siblings import as plain modules
import numpy as np
from common import ROOT, ROUNDS, SECONDS, register, settings_for

NOTE = (
    'The machine has 2 cores shared with other work: absolute numbers are noisy. The ratios, each measured side by '
    'side in this one run (serving: the median of per-round ratios, every server up at once and the load on one at a time; training: best of interleaved rounds, in CPU seconds, which other load disturbs least), are what count.'
)


def rows(r: dict) -> list[dict]:
    "The issue's table: what was measured, the figures, the headline figure (a ratio, or seconds) and its goal."
    out = []

    def row(key, what, figures, ratio, goal=None, ok=None, headline=None):
        out.append(
            dict(
                key=key,
                what=what,
                figures=figures,
                ratio=None if ratio is None else round(ratio, 3),
                headline=headline or ('' if ratio is None else f'{ratio:.2f}x'),
                goal=goal,
                met=ok,
            )
        )

    s = r.get('serving')
    if s:
        rounds = s.get('rounds', {})

        def per_round(
            a, b, scale=1.0
        ):  # the median of each run's ratio to its twin: both sides measured next to each other
            if a not in rounds or b not in rounds:
                return s[a] * scale / s[b]
            x, y = np.array(rounds[a]) * scale, np.array(rounds[b])
            n = min(len(x), len(y))  # P1's sides hold several short runs a round; against another figure, their mean
            return float(np.median(x.reshape(n, -1).mean(1) / y.reshape(n, -1).mean(1)))

        for c in (1, 32):
            p, n = s[f'predict_one_json_c{c}'], s[f'noop_one_json_c{c}']
            ratio = per_round(f'predict_one_json_c{c}', f'noop_one_json_c{c}')
            row(
                f'P1 c={c}',
                f'P1 /predict one image as JSON, c={c}, against a no-op route reading the same body',
                f'{p:,.0f} vs {n:,.0f} req/s',
                ratio,
                '>= 0.8x',
                ratio >= 0.8,
            )
        inproc = s['inprocess_batch256_images_s']
        pj = s['predict_batch256_json_c4'] * 256
        ratio = per_round('predict_batch256_json_c4', 'inprocess_batch256_images_s', 256)
        row(
            'P2 json',
            'P2 /predict 256 images a request as JSON (c=4), against onnxruntime in-process on the same batch',
            f'{pj:,.0f} vs {inproc:,.0f} images/s ({s["predict_batch256_json_c4"]:,.1f} req/s; no-op twin '
            f'{s["noop_batch256_json_c4"]:,.1f} req/s)' + _cpu(s, 'predict_batch256_json_c4'),
            ratio,
            '>= 0.5x',
            ratio >= 0.5,
        )
        binary = {
            f: per_round(f'predict_batch256_{f}_c4', 'inprocess_batch256_images_s', 256)
            for f in ('npy', 'raw', 'rawio')
            if f'predict_batch256_{f}_c4' in s
        }
        if binary:
            best = max(binary, key=binary.get)
            ratio, key = binary[best], f'predict_batch256_{best}_c4'
            others = ', '.join(f'{f} {v:.2f}x' for f, v in binary.items())
            row(
                'P2 binary',
                'P2 /predict 256 images a request in the fastest format offered (application/x-npy, or raw uint8 counts as application/octet-stream; rawio: raw counts in and raw float32 probabilities out), c=4',
                f'{best}: {s[key] * 256:,.0f} vs {inproc:,.0f} images/s ({s[key]:,.1f} req/s; {others})' + _cpu(s, key),
                ratio,
                '>= 0.8x',
                ratio >= 0.8,
            )
        else:
            row(
                'P2 binary',
                'P2 /predict 256 images a request in the fastest format offered',
                'JSON is the only format',
                None,
                '>= 0.8x',
                False,
                headline='none',
            )
        for c in (1, 32):
            p, lit = s[f'predict_one_json_c{c}'], s[f'litserve_one_json_c{c}']
            ratio = per_round(f'predict_one_json_c{c}', f'litserve_one_json_c{c}')
            row(
                f'peer c={c}',
                f'peer: mlproj against LitServe serving the same ONNX graph, same JSON, c={c}',
                f'{p:,.0f} vs {lit:,.0f} req/s',
                ratio,
                '> 1x',
                ratio > 1,
            )
        w2, w1 = s['predict_one_json_2workers_c32'], s['predict_one_json_c32']
        row(
            'workers',
            'uvicorn --workers 2 against 1 (2 cores), /predict one image, c=32',
            f'{w2:,.0f} vs {w1:,.0f} req/s',
            per_round('predict_one_json_2workers_c32', 'predict_one_json_c32'),
        )
    h = r.get('health')
    if h:
        row(
            'health',
            f'/health while a {h["body_bytes"] / 1e6:.1f} MB JSON body is processed by /predict (issues 6, 23): its slowest answer',
            f'slowest {h["health_max_ms"]:.1f} ms, median {h["health_median_ms"]:.1f} ms; the large request {h["big_request_ms"]:.0f} ms',
            None,
            '< 50 ms',
            h['health_max_ms'] < 50,
            headline=f'{h["health_max_ms"]:.0f} ms',
        )
    # begin-only-with: annotation
    a = r.get('annotate')
    if a:  # issue 9: label writes with 50 annotators, each row's two modes (see bench/annotate_writes.py)
        from annotate_writes import goal_met

        rate = a['meta']['rate']
        for k, x in a['rows'].items():
            c, o = x['closed'], x['open']
            row(
                f'annotate {k}',
                f'annotation saves, {a["meta"]["annotators"]} annotators, {k}: open loop at {rate:g}/s offered '
                '(p99 from the time a save was due), closed loop back to back (the capacity)',
                f'open {o["per_s"]:,.0f} writes/s, p50 {o["p50"]:.1f} ms, p99 {o["p99"]:.1f} ms; closed {c["per_s"]:,.0f} writes/s, '
                f'p99 {c["p99"]:.0f} ms; server CPU {c["cpu_ms"]:.2f} ms a save',
                None,
                '>= 300 writes/s, p99 < 100 ms',
                goal_met(x, rate),
                headline=f'{o["p99"]:.0f} ms p99',
            )
        if a.get('skipped'):
            row('annotate pg', a['skipped'], '', None, headline='skipped')
    # end-only-with: annotation
    t = r.get('training')
    if t:
        ratio = t['lightning_cpu_s'] / t['plain_cpu_s']
        row(
            'P3',
            f'P3 Lightning fit against a plain PyTorch loop, {t["epochs"]} epochs, 1 thread each (CPU seconds)',
            f'{t["lightning_cpu_s"]:.2f} s vs {t["plain_cpu_s"]:.2f} s CPU; wall {t["lightning_s"]:.2f} s vs {t["plain_s"]:.2f} s '
            f'({t["lightning_s"] / t["plain_s"]:.2f}x); val acc {t["lightning_val_acc"]:.3f} vs {t["plain_val_acc"]:.3f}',
            ratio,
            '<= 1.1x',
            ratio <= 1.1,
        )
    j = r.get('jobs')
    if j:
        over = j.get('overhead_outside_cells_s', j['job_s'] - j['direct_s'])
        row(
            'P4 overhead',
            f"P4 a training job through papermill (`mlproj train`), {j['epochs']} epochs: its time outside the notebook's cells "
            '(the cells do what the direct call does)',
            f'job {j["job_s"]:.1f} s, its cells {j.get("job_cells_s", 0):.1f} s; against train(cfg) in a fresh process {j["direct_s"]:.1f} s '
            f"({j.get('overhead_s', j['job_s'] - j['direct_s']):.1f} s apart, {j.get('overhead_outside_fit_s', 0):.1f} s once each one's fit is taken out: "
            f'fit {j["job_fit_s"]:.2f} s in the job, {j["direct_fit_s"]:.2f} s direct)',
            None,
            '<= 2 s',
            over <= 2,
            headline=f'{over:.1f} s',
        )
        if 'direct_call_s' in j:
            r2 = j['direct_call_s'] / j['direct_fit_s']
            row(
                'P4 call',
                'P4 the train(cfg) call against its fit, torch, Lightning and wandb already imported',
                f'{j["direct_call_s"]:.2f} s for {j["direct_fit_s"]:.2f} s of fit (with those imports {j["direct_call_s"] + j.get("direct_imports_s", 0):.2f} s; '
                f'the whole process {j["direct_s"]:.1f} s)',
                r2,
                '< 2x',
                r2 < 2,
            )
    return out


def _cpu(s: dict, key: str) -> str:
    "'; server CPU N us a request' for a serving figure that has it (trees measured before bench/ recorded it have not)."
    us = s.get('cpu_us', {}).get(key)
    return '' if us is None else f'; server CPU {us:,.0f} us a request'


def _ratio(v) -> str:
    return '' if v is None else f'{v:.2f}x'


def _met(x) -> str:
    return '' if x['met'] is None else ('yes' if x['met'] else 'no')


def markdown(r: dict) -> str:
    m = r['meta']
    lines = [
        f'# Benchmarks ({m["date"]}, commit {m["commit"] or "none"}{" dirty" if m["dirty"] else ""})',
        '',
        NOTE,
        '',
        f'{m["cores"]} cores, load average {m["loadavg"]} at the start; each load run {m["seconds"]:g} s from '
        f'{m.get("load_tool", "wrk")} (one thread) on loopback against uvicorn (uvloop, httptools, 1 worker unless said), '
        f'{m.get("rounds", 2)} interleaved rounds; figures are medians over rounds.',
        '',
    ]
    base = {x['key']: x for x in r.get('baseline', {}).get('table', [])}
    if base:
        b = r['baseline']['meta']
        lines += [
            f'*before* is commit {b["commit"]} measured first in this same run by the same scripts; *after* is this tree.',
            '',
            '| what | before | after | goal | met | after: figures |',
            '|---|---:|---:|---|---|---|',
        ]
        for x in r['table']:
            lines.append(
                f'| {x["what"]} | {base.get(x["key"], {}).get("headline", "")} | {x["headline"]} | {x["goal"] or ""} | {_met(x)} | {x["figures"]} |'
            )
        lines += ['', '### before: figures', '', '| what | figures |', '|---|---|']
        lines += [f'| {x["what"]} | {x["figures"]} |' for x in r['baseline']['table']]
    else:
        lines += ['| what | figures | ratio | goal | met |', '|---|---|---:|---|---|']
        lines += [
            f'| {x["what"]} | {x["figures"]} | {x["headline"]} | {x["goal"] or ""} | {_met(x)} |' for x in r['table']
        ]
    if r.get('lighten'):
        lines += [
            '',
            f'## Lighter models ({r["lighten"]["epochs"]} epochs of distillation and of fine-tuning after pruning)',
            '',
            'Made by `mlproj.lighten` from the P3 model; latency is the median onnxruntime call on one thread.',
            '',
            r['lighten']['markdown'],
        ]
    return '\n'.join(lines) + '\n'


def baseline(ref: str, parts: set, epochs: int, tmp: Path) -> dict:
    "The same parts measured on commit `ref` by these same scripts (its tree unpacked into `tmp`, first on PYTHONPATH)."
    tree = tmp / 'baseline'
    tree.mkdir()
    subprocess.run(f'git -C {ROOT} archive --format=tar {ref} | tar -x -C {tree}', shell=True, check=True)
    subprocess.run(['rm', '-rf', str(tree / 'bench')], check=True)
    subprocess.run(['cp', '-r', str(ROOT / 'bench'), str(tree / 'bench')], check=True)
    only = ','.join(p for p in ('training', 'jobs', 'serving', 'health') if p in parts)
    env = {**os.environ, 'PYTHONPATH': str(tree)}
    for k in [k for k in env if k.startswith('MLPROJ_')]:
        env.pop(k)
    subprocess.run(
        [
            sys.executable,
            str(tree / 'bench' / 'run.py'),
            '--only',
            only,
            '--epochs',
            str(epochs),
            '--out',
            str(tmp / 'baseline-out'),
        ],
        cwd=tree,
        env=env,
        check=True,
    )
    return json.loads((tmp / 'baseline-out' / 'results.json').read_text())


def git(*args) -> str:
    return subprocess.run(['git', '-C', str(ROOT), *args], capture_output=True, text=True).stdout.strip()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        '--only',
        default='training,jobs,lighten,serving,health,annotate',
        help='comma-separated parts: training, jobs, serving, lighten, health, annotate (also writes annotate.json and annotate.md)',
    )
    ap.add_argument('--epochs', type=int, default=20, help='epochs of the P3 runs (the served model is the last one)')
    ap.add_argument('--out', default=str(ROOT / 'reports' / 'bench'), help='folder for results.json and results.md')
    ap.add_argument(
        '--baseline', help='a git commit measured first, in this same run, by these same scripts: the "before" column'
    )
    args = ap.parse_args(argv)
    parts = set(args.only.split(','))
    os.environ.setdefault('WANDB_SILENT', 'true')
    from mlproj.data import benchmark_version

    r = dict(
        meta=dict(
            date=datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC'),
            commit=git('rev-parse', '--short', 'HEAD') or None,
            dirty=bool(git('status', '--porcelain', '--untracked-files=no', '--', '.', ':!reports/bench')),
            cores=os.cpu_count(),  # dirty: its own output aside
            loadavg=' '.join(f'{v:.1f}' for v in os.getloadavg()),
            seconds=SECONDS,
            rounds=ROUNDS,
            load_tool='wrk' if shutil.which('wrk') else 'an async httpx client',
            python=platform.python_version(),
            note=NOTE,
        )
    )
    with tempfile.TemporaryDirectory(prefix='mlproj-bench-') as tmp:
        work = Path(tmp)
        if args.baseline:
            print(f'before: commit {args.baseline}, by these same scripts', flush=True)
            r['baseline'] = baseline(args.baseline, parts, args.epochs, work)
            r['baseline']['meta']['commit'] = args.baseline
            print('after: this tree', flush=True)
        settings = settings_for(work)
        vid = benchmark_version(settings)
        start = time.perf_counter()
        run_dir = None
        if parts & {'training', 'serving', 'lighten', 'health'}:
            print(f'P3: Lightning fit against a plain loop, {args.epochs} epochs', flush=True)
            from training import p3

            r['training'], run_dir = p3(settings, vid, work, args.epochs, repeats=3 if 'training' in parts else 1)
        if 'jobs' in parts:
            print('P4: a training job through papermill against train(cfg)', flush=True)
            from training import p4

            r['jobs'] = p4(settings, vid, work)
        if 'lighten' in parts:
            print('Lighter models: quantized, distilled, pruned', flush=True)
            from lighten import run as lighten

            r['lighten'] = lighten(settings, vid, run_dir, work)
        version = register(settings, run_dir) if parts & {'serving', 'health'} else None
        if 'serving' in parts:
            print('P1, P2, LitServe, workers', flush=True)
            from serving import run as serving

            r['serving'] = serving(settings, version, work)
        if 'health' in parts:
            print('/health while a 4 MB JSON body is processed', flush=True)
            from health import run as health

            from mlproj.settings import to_env

            r['health'] = health({**to_env(settings), 'MLPROJ_SERVING_MODEL': str(version)}, work)
        # begin-only-with: annotation
        if 'annotate' in parts:
            print('Annotation saves: 50 annotators, open and closed loop, SQLite and PostgreSQL', flush=True)
            from annotate_writes import run as annotate

            r['annotate'] = annotate(
                seconds=float(os.environ.get('BENCH_ANNOTATE_SECONDS', '8')),
                pg=os.environ.get('MLPROJ_TEST_DATABASE_URL', 'postgresql+psycopg://postgres@127.0.0.1:5432/test'),
                out=Path(args.out),
            )
        # end-only-with: annotation
        r['meta']['total_s'] = round(time.perf_counter() - start, 1)
    r['table'] = rows(r)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / 'results.json').write_text(json.dumps(r, indent=1) + '\n')
    md = markdown(r)
    (out / 'results.md').write_text(md)
    print('\n' + md + f'\nwritten to {out}/results.json and results.md')


if __name__ == '__main__':
    main()
