"""Where a training run's time goes: pyinstrument over `train(cfg)` and over a papermill job, stage by stage.

python bench/profile_train.py [--epochs 2] [--out reports/bench]   (writes profile-train.txt and profile-job.txt)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, settings_for


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--epochs', type=int, default=2)
    ap.add_argument('--out', default=str(ROOT / 'reports' / 'bench'))
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from pyinstrument import Profiler

    stages = {}
    with tempfile.TemporaryDirectory(prefix='mlproj-profile-') as tmp:
        t = time.perf_counter()
        import torch  # noqa: F401

        stages['import torch'] = time.perf_counter() - t
        t = time.perf_counter()
        import lightning  # noqa: F401

        stages['import lightning'] = time.perf_counter() - t
        from mlproj.data import benchmark_version
        from mlproj.jobs import run_job
        from mlproj.train import config_from_settings, train

        settings = settings_for(Path(tmp))
        vid = benchmark_version(settings)
        cfg = config_from_settings(settings, vid, Path(tmp) / 'warm', max_epochs=1, progress=False)
        train(cfg)  # warm: first-call costs (lazy imports, wandb service start) out of the profile below
        prof = Profiler(interval=0.001)
        cfg = config_from_settings(settings, vid, Path(tmp) / 'direct', max_epochs=args.epochs, progress=False)
        t = time.perf_counter()
        with prof:
            res = train(cfg)
        stages['train(cfg) call'], stages['of which fit'] = time.perf_counter() - t, res.seconds
        (out / 'profile-train.txt').write_text(prof.output_text(unicode=False, color=False, show_all=False))
        prof = Profiler(interval=0.001)
        t = time.perf_counter()
        with prof:
            run = run_job(settings, 'train', dict(dataset_version=vid, max_epochs=args.epochs), progress=False)
        stages['papermill job'] = time.perf_counter() - t
        nb = json.loads((run / 'train.ipynb').read_text())
        stages['of which notebook cells'] = sum(
            c['metadata'].get('papermill', {}).get('duration') or 0 for c in nb['cells']
        )
        stages['of which fit (in the kernel)'] = json.loads((run / 'metrics.json').read_text())['seconds']
        (out / 'profile-job.txt').write_text(prof.output_text(unicode=False, color=False, show_all=False))
    for k, v in stages.items():
        print(f'{k:<32} {v:7.2f} s')
    (out / 'profile-stages.json').write_text(json.dumps({k: round(v, 3) for k, v in stages.items()}, indent=1) + '\n')
    print(f'profiles in {out}/profile-train.txt and profile-job.txt')


if __name__ == '__main__':
    main()
