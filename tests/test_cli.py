"""The mlproj command: help on every command, a light start-up, one-line errors."""
import subprocess
import sys

import pytest

from conftest import ROOT
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
    code = ('import sys, contextlib, io\n'
            'from mlproj.cli import main\n'
            'with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit): main(["--help"])\n'
            'print(sorted({"torch", "pytorch_lightning", "wandb", "papermill", "onnxruntime", "uvicorn", "sklearn"} & set(sys.modules)))')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == '[]'


def test_cli_errors_are_one_line(tmp_path):
    env = {'PATH': '/usr/bin:/bin', 'MLPROJ_PATHS_STORE': str(tmp_path / 'store'), 'MLPROJ_PATHS_REPORTS': str(tmp_path / 'r')}
    r = subprocess.run([MLPROJ, 'promote', '1', '--to', 'production'], capture_output=True, text=True, cwd=ROOT, env=env)
    assert r.returncode == 1 and r.stderr.count('\n') == 1 and 'no model is registered' in r.stderr
    r = subprocess.run([MLPROJ, 'train', '-p', 'epochs', '3'], capture_output=True, text=True, cwd=ROOT, env=env)
    assert r.returncode == 1 and "no parameter 'epochs'" in r.stderr and 'max_epochs' in r.stderr
    r = subprocess.run([MLPROJ, 'train', '-p', 'max_epochs', 'ten'], capture_output=True, text=True, cwd=ROOT, env=env)
    assert r.returncode == 1 and "-p max_epochs: 'ten' is not an int" in r.stderr
    r = subprocess.run([MLPROJ, 'register'], capture_output=True, text=True, cwd=ROOT, env=env)
    assert r.returncode == 1 and 'no finished evaluate run' in r.stderr
    r = subprocess.run([MLPROJ, 'models'], capture_output=True, text=True, cwd=tmp_path, env={'PATH': '/usr/bin:/bin'})
    assert r.returncode == 1 and 'no settings.ini' in r.stderr
    r = subprocess.run([MLPROJ, 'serve', '--port', 'eighty'], capture_output=True, text=True, cwd=ROOT, env=env)
    assert r.returncode == 2 and 'invalid int value' in r.stderr
