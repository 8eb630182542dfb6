"""P3 (Lightning `fit` against a plain PyTorch loop, same epochs) and P4 (a papermill job against `train(cfg)`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from common import ROOT


def plain_fit(cfg) -> tuple[float, float, float]:
    "(wall seconds, CPU seconds, val accuracy) of a plain PyTorch loop doing what `train(cfg)`'s Trainer does: same data (the DataModule's, typeset digits included), net, optimiser, schedule, augmentation, validation each epoch."
    import torch
    import torch.nn.functional as F

    from mlproj.model import NetConfig, SmallCNN, VersionDataModule, random_affine

    start, cpu = time.perf_counter(), time.process_time()
    torch.manual_seed(cfg.seed)
    torch.use_deterministic_algorithms(True)
    dm = VersionDataModule(cfg.store, cfg.dataset_version, cfg.batch_size, cfg.seed)  # the batches train(cfg) fits on
    dm.setup('fit')
    train_dl, val_dl = dm.train_dataloader(), dm.val_dataloader()
    net = SmallCNN(NetConfig(cfg.width, cfg.hidden, n_classes=10, in_shape=(8, 8), scale=16.0))  # the digits CNN
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.max_epochs * len(train_dl))
    g = torch.Generator().manual_seed(cfg.seed)
    for _ in range(cfg.max_epochs):
        net.train()
        for x, y in train_dl:
            if cfg.augment:
                x = random_affine(x, g)
            loss = F.cross_entropy(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        net.eval()
        right = n = 0
        with torch.no_grad():
            for x, y in val_dl:
                logits = net(x)
                F.cross_entropy(logits, y)
                right, n = right + int((logits.argmax(-1) == y).sum()), n + len(y)
    return time.perf_counter() - start, time.process_time() - cpu, right / n


class FitClock:
    "Wall and CPU seconds of every `Trainer.fit` while in the `with` block (CPU time is what other load on the machine disturbs least)."

    def __enter__(self):
        import lightning as L

        self.wall, self.cpu, self.orig = [], [], L.Trainer.fit
        clock = self

        def fit(trainer, *a, **kw):
            w, c = time.perf_counter(), time.process_time()
            try:
                return clock.orig(trainer, *a, **kw)
            finally:
                clock.wall.append(time.perf_counter() - w)
                clock.cpu.append(time.process_time() - c)

        L.Trainer.fit = fit
        return self

    def __exit__(self, *exc):
        import lightning as L

        L.Trainer.fit = self.orig


def p3(settings, vid: str, work: Path, epochs: int, repeats: int = 3, log=print) -> tuple[dict, Path]:
    "Lightning `fit` (as `train` configures it) against the plain loop, interleaved, best of `repeats`; and a trained run."
    import torch

    from mlproj.train import config_from_settings, train

    torch.set_num_threads(1)  # both sides: a second intra-op thread spin-waits on a busy machine and blurs CPU time
    plain, plain_cpu, accs = [], [], {}
    with FitClock() as clock:
        for i in range(repeats):
            run_dir = work / 'runs' / f'p3-{i}'
            res = train(
                config_from_settings(settings, vid, run_dir, max_epochs=epochs, wandb_mode='disabled', progress=False)
            )
            s, c, acc = plain_fit(config_from_settings(settings, vid, run_dir, max_epochs=epochs))
            plain.append(s)
            plain_cpu.append(c)
            accs = dict(lightning_val_acc=res.val_acc, plain_val_acc=round(acc, 5))
            log(
                f'  round {i + 1}: Lightning fit {clock.wall[-1]:.2f} s ({clock.cpu[-1]:.2f} s CPU), '
                f'plain loop {s:.2f} s ({c:.2f} s CPU), {epochs} epochs'
            )
    return dict(
        epochs=epochs,
        lightning_s=min(clock.wall),
        plain_s=min(plain),
        lightning_cpu_s=min(clock.cpu),
        plain_cpu_s=min(plain_cpu),
        **accs,
    ), run_dir


_DIRECT = """import json, sys, time
from mlproj.settings import load_settings
from mlproj.train import config_from_settings, train
s = load_settings()
cfg = config_from_settings(s, sys.argv[1], sys.argv[2], max_epochs=int(sys.argv[3]), progress=False)
t0 = time.perf_counter()
import lightning, wandb, mlproj.model  # what train() imports on its first call
imports = time.perf_counter() - t0
t0 = time.perf_counter()
r = train(cfg)
print(json.dumps(dict(fit_s=r.seconds, call_s=time.perf_counter() - t0, imports_s=imports)))
"""


def _children_cpu() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def p4(settings, vid: str, work: Path, epochs: int = 2, repeats: int = 2, log=print) -> dict:
    "A training job through papermill (`mlproj train`) against `train(cfg)` called directly, each in a fresh process; best of `repeats`."
    rounds = [_p4_round(settings, vid, work / f'p4-{i}', epochs, log) for i in range(repeats)]
    best = min(rounds, key=lambda r: r['job_s'] + r['direct_s'])  # the round the machine's other load disturbed least
    return dict(epochs=epochs, **best, rounds=rounds)


def _p4_round(settings, vid, work, epochs, log) -> dict:
    from mlproj.settings import to_env

    env = {**os.environ, **to_env(settings)}
    start, cpu = time.perf_counter(), _children_cpu()
    subprocess.run(
        [
            str(Path(sys.executable).with_name('mlproj')),
            'train',
            '--dataset-version',
            vid,
            '-p',
            'max_epochs',
            str(epochs),
            '--quiet',
        ],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    job_s, job_cpu = time.perf_counter() - start, _children_cpu() - cpu
    run = max((settings.reports_dir / 'runs').glob('*-train-*'), key=lambda p: p.stat().st_mtime)
    job_fit = json.loads((run / 'metrics.json').read_text())['seconds']
    cells = sum(
        c['metadata'].get('papermill', {}).get('duration') or 0  # what the notebook's own cells took
        for c in json.loads((run / 'train.ipynb').read_text())['cells']
    )
    start, cpu = time.perf_counter(), _children_cpu()
    out = subprocess.run(
        [sys.executable, '-c', _DIRECT, vid, str(work / 'direct'), str(epochs)],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    direct_s, direct_cpu = time.perf_counter() - start, _children_cpu() - cpu
    d = json.loads(out.stdout.strip().splitlines()[-1])
    log(
        f'  job {job_s:.2f} s ({job_cpu:.2f} s CPU, fit {job_fit:.2f} s); direct {direct_s:.2f} s ({direct_cpu:.2f} s CPU; '
        f'imports {d.get("imports_s", 0):.2f} s, then the train(cfg) call {d["call_s"]:.2f} s, its fit {d["fit_s"]:.2f} s)'
    )
    return dict(
        job_s=job_s,
        job_cpu_s=job_cpu,
        job_fit_s=job_fit,
        direct_s=direct_s,
        direct_cpu_s=direct_cpu,
        overhead_s=job_s - direct_s,
        overhead_outside_fit_s=(job_s - job_fit) - (direct_s - d['fit_s']),
        job_cells_s=cells,
        overhead_outside_cells_s=job_s - cells,
        direct_call_s=d['call_s'],
        direct_imports_s=d.get('imports_s', 0),
        direct_fit_s=d['fit_s'],
    )
