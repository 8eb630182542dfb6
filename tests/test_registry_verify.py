"""`mlproj models` reads every file of every version and marks a damaged version; `--verify` names each damaged file and
exits 1. Damage is made as tests/test_registry_damage.py makes it: bytes changed, a file deleted, a link, a manifest edited."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT
from test_registry_concurrency import fake_evaluation, fake_run

from mlproj.registry import Registry
from mlproj.store import Store


@pytest.fixture
def reg(tmp_path):
    "A registry with versions 1 (production), 2 (staging) and 3, made of small fake bundles."
    r = Registry(Store(str(tmp_path / 'store')))
    for i in (1, 2, 3):
        r.register(fake_run(tmp_path / 'runs', f'run{i}'), fake_evaluation(True), train_run=f'run{i}')
    r.set_alias('production', 1)
    r.set_alias('staging', 2)
    return r


@pytest.fixture
def models(reg, tmp_path):
    "`mlproj models ...` in its own process over this registry: (exit code, stdout, stderr)."
    env = {
        'PATH': '/usr/bin:/bin',
        'MLPROJ_TASK_NAME': 'digits',  # the fixture's models and the assertions are the digits' (any project task)
        'USER': 'ana',
        'PYTHONPATH': str(ROOT),
        'MLPROJ_PATHS_STORE': reg.store.root,
        'MLPROJ_PATHS_REPORTS': str(tmp_path / 'r'),
    }

    def run(*args):
        r = subprocess.run(
            [sys.executable, '-c', 'import sys; from mlproj.cli import main; sys.exit(main())', 'models', *args],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=env,
        )
        return r.returncode, r.stdout, r.stderr

    return run


def files_column(stdout: str) -> dict:
    "version -> its `files` column (the last) in the listing."
    return {int(l.split()[0]): l.split()[-1] for l in stdout.splitlines() if l.split() and l.split()[0].isdigit()}


def test_a_sound_registry_verifies_and_exits_0(models):
    code, out, _ = models('--verify')
    assert code == 0 and files_column(out) == {1: 'ok', 2: 'ok', 3: 'ok'}
    assert 'every file of the 3 versions matches its sha256' in out


@pytest.mark.parametrize(
    'damage, says',
    [
        (
            lambda m: (m / '2' / 'model.safetensors').write_bytes(b'one byte changed?'),
            'models/2/model.safetensors does not match its sha256',
        ),
        (lambda m: (m / '2' / 'net.json').unlink(), 'models/2/net.json is missing'),
        (
            lambda m: ((m / '2' / 'model.onnx').unlink(), os.symlink('/dev/zero', m / '2' / 'model.onnx')),
            'models/2/model.onnx is a symbolic link',
        ),
        (
            lambda m: (m / '2' / 'bundle.json').write_bytes(
                (m / '2' / 'bundle.json').read_bytes().replace(b'run2', b'run9')
            ),
            'model version 2: bundle.json has been changed',
        ),
    ],
)
def test_a_damaged_version_is_marked_and_verify_names_its_file(reg, models, damage, says):
    damage(Path(reg.store.root) / 'models')
    code, out, err = models()
    assert code == 0 and files_column(out) == {1: 'ok', 2: 'DAMAGED', 3: 'ok'}, out + err
    assert '1 version(s) DAMAGED: `mlproj models --verify` names the files' in out
    code, out, err = models('--verify')
    assert code == 1 and files_column(out)[2] == 'DAMAGED' and says in out, out + err
    named = out.split('files\n')[1]
    assert 'version 1' not in named and 'version 3' not in named  # only the damaged one is named


def test_verify_finds_the_same_damage_that_load_refuses(reg):
    (Path(reg.store.root) / 'models' / '3' / 'model.onnx').write_bytes(b'swapped')
    found = reg.verify()
    assert (
        found[1] == found[2] == []
        and len(found[3]) == 1
        and 'models/3/model.onnx does not match its sha256' in found[3][0]
    )
    with pytest.raises(Exception, match='model.onnx does not match its sha256'):
        reg.load(3)
