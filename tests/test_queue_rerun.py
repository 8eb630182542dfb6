"""A rerun repeats a finished training run: same parameters, seed and dataset version, same metrics on the same code."""

import json
import subprocess

import pytest
from conftest import ROOT

from mlproj.data import benchmark_version
from mlproj.jobs import read_run, run_job
from mlproj.settings import to_env


@pytest.mark.full
def test_rerun_of_a_seeded_training_gives_the_same_metrics(settings):
    params = dict(
        dataset_version=benchmark_version(settings), seed=3, max_epochs=1, limit_train_batches=3, wandb_mode='disabled'
    )
    first = run_job(settings, 'train', params, progress=False)
    env = {'PATH': '/usr/bin:/bin', 'HOME': str(settings.reports_dir.parent), **to_env(settings)}
    r = subprocess.run(
        [str(ROOT / '.venv/bin/mlproj'), 'rerun', first.name, '--quiet'],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert 'val_acc' in r.stdout and 'DIFFERENT' not in r.stdout and 'same' in r.stdout
    runs = sorted((settings.reports_dir / 'runs').iterdir())
    assert len(runs) == 2
    a, b = (read_run(d) for d in runs)
    assert {k: v for k, v in b['parameters'].items() if k != 'run_dir'} == {
        k: v for k, v in a['parameters'].items() if k != 'run_dir'
    }
    assert a['metrics']['val_acc'] == b['metrics']['val_acc'] and a['metrics']['history'] == b['metrics']['history']
    assert json.loads((runs[1] / 'run.json').read_text())['code_version'] == a['code_version']
