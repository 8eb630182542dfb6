"""Training scales out on Lightning's own strategies: DDP over 2 CPU processes (gloo) learns as well as one process."""

import json
import os
import subprocess
import sys

import pytest
from conftest import make_settings

# a script file, not `python -c`: Lightning's DDP launcher starts the other processes by running the same command again
SCRIPT = """import json, os, sys
from mlproj.settings import load_settings
from mlproj.train import config_from_settings, train
from mlproj.evaluate import evaluate_run
s = load_settings()
vid, run_dir, devices = sys.argv[1], sys.argv[2], int(sys.argv[3])
r = train(config_from_settings(s, vid, run_dir, max_epochs=int(sys.argv[4]), wandb_mode='disabled', progress=False,
                               devices=devices, strategy='ddp' if devices > 1 else 'auto'))
if os.environ.get('LOCAL_RANK', '0') == '0':
    ev = evaluate_run(run_dir, vid, s.store_url, s.problem)
    print(json.dumps(dict(accuracy=ev['model']['accuracy'], world_size=r.world_size, val_acc=r.val_acc)))
"""


@pytest.mark.full
def test_ddp_on_two_cpu_processes_reaches_the_accuracy_of_one(tmp_path):
    from mlproj.data import benchmark_version
    from mlproj.settings import to_env

    s = make_settings(tmp_path)
    vid = benchmark_version(s)
    script = tmp_path / 'train_ddp.py'
    script.write_text(SCRIPT)
    env = {**os.environ, **to_env(s)}
    env.pop('LOCAL_RANK', None)
    got = {}
    for devices in (1, 2):
        out = subprocess.run(
            [sys.executable, str(script), vid, str(tmp_path / f'run{devices}'), str(devices), '20'],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert out.returncode == 0, out.stderr[-3000:]
        got[devices] = json.loads(out.stdout.strip().splitlines()[-1])
    print('test accuracy, 1 process then DDP over 2:', got)
    assert (got[1]['world_size'], got[2]['world_size']) == (1, 2), got
    assert got[1]['accuracy'] > 0.95, got
    assert abs(got[2]['accuracy'] - got[1]['accuracy']) <= 0.02, got  # same test split, same acceptance: same accuracy
    assert sorted(p.name for p in (tmp_path / 'run2').iterdir()) == [
        'metrics.json',
        'model.onnx',
        'model.safetensors',
        'net.json',
    ]
