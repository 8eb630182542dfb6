"""P3 (Lightning `fit` against a plain PyTorch loop, same epochs) and P4 (a papermill job against `train(cfg)`)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from common import ROOT


def plain_fit(cfg) -> tuple[float, float]:
    "(seconds, val accuracy) of a plain PyTorch loop doing what `train(cfg)`'s Trainer does: same data, net, optimiser, schedule, augmentation, validation each epoch."
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader, TensorDataset
    from mlproj.data import load_splits
    from mlproj.model import DigitsCNN, NetConfig, random_affine
    from mlproj.store import Store
    start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    torch.use_deterministic_algorithms(True)
    splits = {s: TensorDataset(*map(torch.from_numpy, xy)) for s, xy in load_splits(Store(cfg.store), cfg.dataset_version).items()}
    train_dl = DataLoader(splits['train'], batch_size=cfg.batch_size, shuffle=True, generator=torch.Generator().manual_seed(cfg.seed))
    val_dl = DataLoader(splits['val'], batch_size=cfg.batch_size)
    net = DigitsCNN(NetConfig(width=cfg.width, hidden=cfg.hidden))
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.max_epochs * len(train_dl))
    g = torch.Generator().manual_seed(cfg.seed)
    for _ in range(cfg.max_epochs):
        net.train()
        for x, y in train_dl:
            if cfg.augment: x = random_affine(x, g)
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
    return time.perf_counter() - start, right / n


def p3(settings, vid: str, work: Path, epochs: int, repeats: int = 3, log=print) -> tuple[dict, Path]:
    "Lightning `fit` (as `train` configures it) against the plain loop, interleaved, best of `repeats`; and a trained run."
    from mlproj.train import config_from_settings, train
    light, plain, accs = [], [], {}
    for i in range(repeats):
        run_dir = work / 'runs' / f'p3-{i}'
        res = train(config_from_settings(settings, vid, run_dir, max_epochs=epochs, wandb_mode='disabled', progress=False))
        light.append(res.seconds)
        s, acc = plain_fit(config_from_settings(settings, vid, run_dir, max_epochs=epochs))
        plain.append(s)
        accs = dict(lightning_val_acc=res.val_acc, plain_val_acc=round(acc, 5))
        log(f'  round {i + 1}: Lightning fit {res.seconds:.2f} s, plain loop {s:.2f} s ({epochs} epochs)')
    return dict(epochs=epochs, lightning_s=min(light), plain_s=min(plain), **accs), run_dir


_DIRECT = '''import json, sys, time
t0 = time.perf_counter()
from mlproj.settings import load_settings
from mlproj.train import config_from_settings, train
s = load_settings()
r = train(config_from_settings(s, sys.argv[1], sys.argv[2], max_epochs=int(sys.argv[3]), progress=False))
print(json.dumps(dict(fit_s=r.seconds, in_process_s=time.perf_counter() - t0)))
'''


def p4(settings, vid: str, work: Path, epochs: int = 2, log=print) -> dict:
    "A training job through papermill (`mlproj train`) against `train(cfg)` called directly, each in a fresh process."
    from mlproj.settings import to_env
    env = {**os.environ, **to_env(settings)}
    start = time.perf_counter()
    subprocess.run([str(Path(sys.executable).with_name('mlproj')), 'train', '--dataset-version', vid, '-p', 'max_epochs', str(epochs), '--quiet'],
                   cwd=ROOT, env=env, check=True, capture_output=True)
    job_s = time.perf_counter() - start
    run = max((settings.reports_dir / 'runs').glob('*-train-*'))
    job_fit = json.loads((run / 'metrics.json').read_text())['seconds']
    start = time.perf_counter()
    out = subprocess.run([sys.executable, '-c', _DIRECT, vid, str(work / 'runs' / 'p4-direct'), str(epochs)],
                         cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    direct_s = time.perf_counter() - start
    d = json.loads(out.stdout.strip().splitlines()[-1])
    log(f'  job {job_s:.2f} s (fit {job_fit:.2f} s); direct {direct_s:.2f} s (fit {d["fit_s"]:.2f} s)')
    return dict(epochs=epochs, job_s=job_s, job_fit_s=job_fit, direct_s=direct_s, direct_fit_s=d['fit_s'])
