"""`make bench`: every figure of issue 12 measured side by side in one run; ratios printed and written to reports/bench/.

    python bench/run.py [--only serving,training,jobs] [--epochs 20] [--out reports/bench]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent)) # run as a script: its siblings import as plain modules
from common import ROOT, SECONDS, settings_for, register  # noqa: E402

NOTE = ('The machine has 2 cores shared with other work: absolute numbers are noisy. The ratios, each measured side by '
        'side in this one run (best of interleaved rounds; training also in CPU seconds, which other load disturbs least), are what count.')


def rows(r: dict) -> list[dict]:
    "The issue's table: what was measured, the figures, the ratio and its goal."
    out = []
    def row(what, figures, ratio, goal=None, ok=None):
        out.append(dict(what=what, figures=figures, ratio=None if ratio is None else round(ratio, 3), goal=goal, met=ok))
    s = r.get('serving')
    if s:
        for c in (1, 32):
            p, n = s[f'predict_one_json_c{c}'], s[f'noop_one_json_c{c}']
            row(f'P1 /predict one image JSON, c={c}, against the no-op route', f'{p:,.0f} vs {n:,.0f} req/s', p / n, '>= 0.8x', p / n >= 0.8)
        inproc = s['inprocess_batch256_images_s']
        pj = s['predict_batch256_json_c4'] * 256
        row('P2 /predict 256 images JSON (c=4), against onnxruntime in-process', f'{pj:,.0f} vs {inproc:,.0f} images/s '
            f"({s['predict_batch256_json_c4']:,.1f} req/s; no-op twin {s['noop_batch256_json_c4']:,.1f} req/s)", pj / inproc, '>= 0.5x', pj / inproc >= 0.5)
        if 'predict_batch256_npy_c4' in s:
            pn = s['predict_batch256_npy_c4'] * 256
            row('P2 /predict 256 images application/x-npy (c=4), against onnxruntime in-process',
                f"{pn:,.0f} vs {inproc:,.0f} images/s ({s['predict_batch256_npy_c4']:,.1f} req/s)", pn / inproc, '>= 0.8x', pn / inproc >= 0.8)
        else: row('P2 /predict 256 images in a binary format', 'the API offers no binary format', None, '>= 0.8x', False)
        for c in (1, 32):
            p, lit = s[f'predict_one_json_c{c}'], s[f'litserve_one_json_c{c}']
            row(f'peer: mlproj against LitServe, same ONNX graph, same JSON, c={c}', f'{p:,.0f} vs {lit:,.0f} req/s', p / lit, '> 1x', p / lit > 1)
        w2, w1 = s['predict_one_json_2workers_c32'], s['predict_one_json_c32']
        row('uvicorn --workers 2 against 1, /predict one image, c=32', f'{w2:,.0f} vs {w1:,.0f} req/s', w2 / w1)
    t = r.get('training')
    if t:
        ratio = t['lightning_cpu_s'] / t['plain_cpu_s']
        row(f"P3 Lightning fit against a plain PyTorch loop, {t['epochs']} epochs (CPU time; wall time ratio "
            f"{t['lightning_s'] / t['plain_s']:.2f}x)", f"{t['lightning_cpu_s']:.2f} s vs {t['plain_cpu_s']:.2f} s CPU, "
            f"{t['lightning_s']:.2f} s vs {t['plain_s']:.2f} s wall (val acc {t['lightning_val_acc']:.3f} vs {t['plain_val_acc']:.3f})",
            ratio, '<= 1.1x', ratio <= 1.1)
    j = r.get('jobs')
    if j:
        over = j.get('overhead_outside_fit_s', j['job_s'] - j['direct_s'])
        row(f"P4 job through papermill against train(cfg) in a fresh process, {j['epochs']} epochs",
            f"{j['job_s']:.1f} s vs {j['direct_s']:.1f} s wall ({j['job_cpu_s']:.1f} s vs {j['direct_cpu_s']:.1f} s CPU); overhead "
            f"{j.get('overhead_s', j['job_s'] - j['direct_s']):.1f} s, {over:.1f} s outside the fit (whose time varies with the load: "
            f"{j['job_fit_s']:.2f} s in the job, {j['direct_fit_s']:.2f} s direct)", None, '<= 2 s', over <= 2)
        if 'direct_call_s' in j:
            r2 = j['direct_call_s'] / j['direct_fit_s']
            row('P4 the train(cfg) call against its training time (fit), torch/Lightning/wandb already imported',
                f"{j['direct_call_s']:.2f} s for {j['direct_fit_s']:.2f} s of fit (with the imports {j['direct_call_s'] + j.get('direct_imports_s', 0):.2f} s; "
                f"the whole process {j['direct_s']:.1f} s)", r2, '< 2x', r2 < 2)
        else:
            row('P4 train(cfg) in a fresh process against its training time', f"{j['direct_s']:.1f} s for {j['direct_fit_s']:.1f} s of fit",
                j['direct_s'] / j['direct_fit_s'], '< 2x', j['direct_s'] / j['direct_fit_s'] < 2)
    return out


def _ratio(v) -> str: return '' if v is None else f'{v:.2f}x'


def markdown(r: dict) -> str:
    m = r['meta']
    lines = [f"# Benchmarks ({m['date']}, commit {m['commit'] or 'none'}{' dirty' if m['dirty'] else ''})", '', NOTE, '',
             f"{m['cores']} cores, load average {m['loadavg']} at the start; each load run {m['seconds']:g} s from wrk "
             '(one thread) on loopback against uvicorn (uvloop, httptools, 1 worker unless said).', '',
             '| what | figures | ratio | goal | met |', '|---|---|---:|---|---|']
    for x in r['table']:
        lines.append(f"| {x['what']} | {x['figures']} | {_ratio(x['ratio'])} "
                     f"| {x['goal'] or ''} | {'' if x['met'] is None else ('yes' if x['met'] else 'no')} |")
    if r.get('lighten'):
        lines += ['', f"## Lighter models ({r['lighten']['epochs']} epochs of distillation and of fine-tuning after pruning)", '',
                  'Made by `mlproj.lighten` from the P3 model; latency is the median onnxruntime call on one thread.', '',
                  r['lighten']['markdown']]
    return '\n'.join(lines) + '\n'


def git(*args) -> str:
    return subprocess.run(['git', '-C', str(ROOT), *args], capture_output=True, text=True).stdout.strip()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--only', default='training,jobs,lighten,serving', help='comma-separated parts: training, jobs, serving, lighten')
    ap.add_argument('--epochs', type=int, default=10, help='epochs of the P3 runs (the served model is the last one)')
    ap.add_argument('--out', default=str(ROOT / 'reports' / 'bench'), help='folder for results.json and results.md')
    args = ap.parse_args(argv)
    parts = set(args.only.split(','))
    os.environ.setdefault('WANDB_SILENT', 'true')
    from mlproj.data import benchmark_version
    r = dict(meta=dict(date=datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC'), commit=git('rev-parse', '--short', 'HEAD') or None,
                       dirty=bool(git('status', '--porcelain', '--untracked-files=no')), cores=os.cpu_count(),
                       loadavg=' '.join(f'{v:.1f}' for v in os.getloadavg()), seconds=SECONDS, python=platform.python_version(), note=NOTE))
    with tempfile.TemporaryDirectory(prefix='mlproj-bench-') as tmp:
        work = Path(tmp)
        settings = settings_for(work)
        vid = benchmark_version(settings)
        start = time.perf_counter()
        run_dir = None
        if 'training' in parts or 'serving' in parts or 'lighten' in parts:
            print(f'P3: Lightning fit against a plain loop, {args.epochs} epochs', flush=True)
            from training import p3
            r['training'], run_dir = p3(settings, vid, work, args.epochs)
        if 'jobs' in parts:
            print('P4: a training job through papermill against train(cfg)', flush=True)
            from training import p4
            r['jobs'] = p4(settings, vid, work)
        if 'lighten' in parts:
            print('Lighter models: quantized, distilled, pruned', flush=True)
            from lighten import run as lighten
            r['lighten'] = lighten(settings, vid, run_dir, work)
        if 'serving' in parts:
            print('P1, P2, LitServe, workers', flush=True)
            from serving import run as serving
            r['serving'] = serving(settings, register(settings, run_dir), work)
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
