"""End to end: `mlproj demo` on a tiny budget, through the real CLI, papermill kernels, registry and HTTP server."""

import json
import subprocess

from conftest import ROOT


def _metrics(tmp_path) -> dict:
    "metrics.json of the newest evaluation run."
    return json.loads((sorted((tmp_path / 'reports' / 'runs').glob('*-evaluate-*'))[-1] / 'metrics.json').read_text())


def test_demo_pipeline_learns_registers_and_serves(tmp_path):
    env = {
        'PATH': '/usr/bin:/bin',
        'MLPROJ_TASK_NAME': 'digits',  # the fixture's models and the assertions are the digits' (any project task)
        'HOME': str(tmp_path),
        'MLPROJ_PATHS_STORE': str(tmp_path / 'store'),
        'MLPROJ_PATHS_REPORTS': str(tmp_path / 'reports'),
        'MLPROJ_TRAIN_WANDB_MODE': 'offline',
        # a short run: the test is about the pipeline, so the bar is lowered (the real criteria are in settings.ini)
        'MLPROJ_PROBLEM_MIN_TEST_ACCURACY': '0.9',
        'MLPROJ_PROBLEM_MIN_MACRO_F1': '0.9',
        'MLPROJ_PROBLEM_MIN_CLASS_RECALL': '0.75',
        'MLPROJ_PROBLEM_SERVICE_LIKE_PER_CLASS': '6',
        'MLPROJ_PROBLEM_MIN_SERVICE_LIKE_ACCURACY': '0.5',
        'MLPROJ_PROBLEM_MAX_SERVICE_LIKE_GAP': '0.5',
    }
    r = subprocess.run(
        [str(ROOT / '.venv/bin/mlproj'), 'demo', '--epochs', '6', '--quiet'],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert 'acceptance: PASS' in out and 'model version 1 (passed acceptance)' in out
    assert '[serve] server stopped\n' in out
    m = _metrics(tmp_path)
    # the end says how the model reads digits as people send them beside the benchmark, and where the demo page is
    assert (
        f'benchmark test split {m["model"]["accuracy"]:.4f}, service-like set {m["service_like"]["accuracy"]:.4f}'
        in out
    )
    assert 'http://127.0.0.1:8000/  the demo page' in out
    assert m['model']['accuracy'] > 0.9 and m['model']['accuracy'] > m['baseline']['accuracy'] + 0.7
    # the served answers printed by the demo are mostly right
    answers = [line for line in out.splitlines() if line.strip().startswith('true ')]
    assert len(answers) == 8 and sum('right' in a for a in answers) >= 6
    bundle = json.loads((tmp_path / 'store' / 'models' / '1' / 'bundle.json').read_text())
    assert set(bundle['files']) == {'model.onnx', 'model.safetensors', 'net.json'}
    assert bundle['code_version']['commit'] is None or len(bundle['code_version']['commit']) == 40
    train = sorted((tmp_path / 'reports' / 'runs').glob('*-train-*'))[-1]
    assert list((train / 'wandb').glob('offline-run-*')), 'wandb logged offline into the run folder'
