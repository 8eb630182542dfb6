"""The mlproj command: help on every command, a light start-up, one-line errors."""

import subprocess
import sys

import pytest
from conftest import ROOT, SHORT_RUN_SERVICE_LIKE, free_port, wait_until

from mlproj.cli import build_parser

MLPROJ = str(ROOT / '.venv' / 'bin' / 'mlproj')
SUBPARSERS = build_parser()._subparsers._group_actions[0].choices
COMMANDS = sorted(SUBPARSERS)


def test_cli_has_the_pipeline_commands():
    assert set(COMMANDS) >= {'data', 'train', 'evaluate', 'register', 'serve', 'demo', 'models', 'promote'}


@pytest.mark.parametrize('cmd', COMMANDS)
def test_every_command_has_help_and_is_in_the_readme(cmd):
    r = subprocess.run([MLPROJ, cmd, '--help'], capture_output=True, text=True)
    assert r.returncode == 0 and f'usage: mlproj {cmd}' in r.stdout
    assert SUBPARSERS[cmd].description and SUBPARSERS[cmd].description.split()[0] in r.stdout
    assert f'mlproj {cmd}' in (ROOT / 'README.md').read_text()


def test_cli_start_does_not_import_heavy_modules():
    code = (
        'import sys, contextlib, io\n'
        'from mlproj.cli import main\n'
        'with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit): main(["--help"])\n'
        'print(sorted({"torch", "lightning", "wandb", "papermill", "onnxruntime", "uvicorn", "sklearn"} & set(sys.modules)))'
    )
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == '[]'


def test_cli_errors_are_one_line(tmp_path):
    env = {
        'PATH': '/usr/bin:/bin',
        'MLPROJ_TASK_NAME': 'digits',  # the fixture's models and the assertions are the digits' (any project task)
        'MLPROJ_PATHS_STORE': str(tmp_path / 'store'),
        'MLPROJ_PATHS_REPORTS': str(tmp_path / 'r'),
    }
    r = subprocess.run(
        [MLPROJ, 'promote', '1', '--to', 'production'], capture_output=True, text=True, cwd=ROOT, env=env
    )
    assert r.returncode == 1 and r.stderr.count('\n') == 1 and 'no model is registered' in r.stderr
    r = subprocess.run([MLPROJ, 'train', '-p', 'epochs', '3'], capture_output=True, text=True, cwd=ROOT, env=env)
    assert r.returncode == 1 and "no parameter 'epochs'" in r.stderr and 'max_epochs' in r.stderr
    r = subprocess.run([MLPROJ, 'train', '-p', 'max_epochs', 'ten'], capture_output=True, text=True, cwd=ROOT, env=env)
    assert r.returncode == 1 and "-p max_epochs: 'ten' is not an int" in r.stderr
    r = subprocess.run([MLPROJ, 'register'], capture_output=True, text=True, cwd=ROOT, env=env)
    assert r.returncode == 1 and 'no finished evaluate run' in r.stderr
    r = subprocess.run(
        [MLPROJ, 'models'],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={'PATH': '/usr/bin:/bin', 'MLPROJ_TASK_NAME': 'digits'},
    )
    assert r.returncode == 1 and 'no settings.ini' in r.stderr
    r = subprocess.run([MLPROJ, 'serve', '--port', 'eighty'], capture_output=True, text=True, cwd=ROOT, env=env)
    assert r.returncode == 2 and 'invalid int value' in r.stderr


@pytest.fixture
def registered_env(trained, tmp_path):
    "Environment for the CLI with a private copy of the fixture's store (model version 1 registered)."
    import shutil

    s, _, _ = trained
    shutil.copytree(s.store_url, tmp_path / 'store')
    return {
        'PATH': '/usr/bin:/bin',
        'MLPROJ_TASK_NAME': 'digits',  # the fixture's models and the assertions are the digits' (any project task)
        'MLPROJ_PATHS_STORE': str(tmp_path / 'store'),
        'MLPROJ_PATHS_REPORTS': str(tmp_path / 'r'),
        'PYTHONPATH': str(ROOT),  # this tree's package, whichever the console script's install points at
        **SHORT_RUN_SERVICE_LIKE,  # promotion checks the criteria in force: the short run's, as it was evaluated
    }


def test_models_and_promote_move_aliases(registered_env):
    run = lambda *a: subprocess.run([MLPROJ, *a], capture_output=True, text=True, cwd=ROOT, env=registered_env)
    r = run('promote', '1', '--to', 'production')
    assert r.returncode == 0 and 'production -> version 1' in r.stdout
    r = run('models')
    assert r.returncode == 0
    row = r.stdout.splitlines()[1].split()
    assert row[0] == '1' and float(row[2]) > 0.9 and row[4] == 'True' and row[5] == 'production'
    r = run('promote', '7', '--to', 'staging')
    assert r.returncode == 1 and "no model version or alias '7'" in r.stderr


def test_serve_command_serves_the_registered_model(registered_env):
    import httpx

    port = free_port()
    proc = subprocess.Popen(
        [MLPROJ, 'serve', '--port', str(port), '--model', '1'],
        cwd=ROOT,
        env=registered_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def ready():
            assert proc.poll() is None, proc.communicate()
            try:
                r = httpx.get(f'http://127.0.0.1:{port}/ready', timeout=1)
            except httpx.TransportError:
                return None
            return [r] if r.status_code == 200 else None

        [r] = wait_until(ready, 60, 0.2, what='mlproj serve answering /ready')
        assert r.json()['model_version'] == 1
        pixels = [
            [0, 0, 5, 13, 9, 1, 0, 0],
            [0, 0, 13, 15, 10, 15, 5, 0],
            [0, 3, 15, 2, 0, 11, 8, 0],
            [0, 4, 12, 0, 0, 8, 8, 0],
            [0, 5, 8, 0, 0, 9, 8, 0],
            [0, 4, 11, 0, 1, 12, 7, 0],
            [0, 2, 14, 5, 10, 12, 0, 0],
            [0, 0, 6, 13, 10, 0, 0, 0],
        ]
        r = httpx.post(f'http://127.0.0.1:{port}/predict', json={'pixels': pixels}, timeout=10)
        assert r.status_code == 200 and r.json()['predictions'][0]['label'] == 0  # the first UCI digit, a zero
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    assert f'http://127.0.0.1:{port}' in out
