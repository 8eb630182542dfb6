"""A damaged store says what is damaged: the file, and what to do; it never follows a link out of the store,
never reads without a size cap; and the registry commands a team uses (history, rollback, prune, repair)."""

import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT, make_settings
from test_registry_concurrency import fake_evaluation, fake_run

from mlproj.registry import Registry, RegistryError
from mlproj.store import MAX_READ, IntegrityError, Store

MLPROJ = str(ROOT / '.venv' / 'bin' / 'mlproj')


@pytest.fixture
def reg(tmp_path):
    "A registry with versions 1 (production) and 2 (staging), made of small fake bundles."
    r = Registry(Store(str(tmp_path / 'store')))
    for i in (1, 2):
        r.register(fake_run(tmp_path / 'runs', f'run{i}'), fake_evaluation(True), train_run=f'run{i}')
    r.set_alias('production', 1)
    r.set_alias('staging', 2)
    return r


def models(reg) -> Path:
    return Path(reg.store.root) / 'models'


def edit_index(reg, **changes):
    idx = json.loads((models(reg) / 'index.json').read_text())
    (models(reg) / 'index.json').write_text(json.dumps({**idx, **changes}))


def refused(fn, *words):
    "`fn` raises a registry error (never a bare KeyError or TypeError) whose message holds every one of `words`."
    with pytest.raises((RegistryError, IntegrityError)) as e:
        fn()
    assert all(w in str(e.value) for w in words), str(e.value)
    return str(e.value)


@pytest.mark.parametrize(
    'content, says',
    [
        (b'', 'is empty'),
        (b'{"versions": [1, 2', 'is not valid JSON'),
        (b'[1, 2]', 'is not a registry index'),
        (b'{"versions": {}, "aliases": []}', 'is not a registry index'),
        (b'{"versions": {"1": 5}, "aliases": {}}', "entry for version '1'"),
        (b'{"versions": {"../x": {"bundle_sha256": "0"}}, "aliases": {}}', "version '../x'"),
    ],
)
def test_broken_index_is_refused_naming_it_and_the_repair(reg, content, says):
    (models(reg) / 'index.json').write_bytes(content)
    for fn in (reg.load, reg.listing, lambda: reg.resolve('production'), lambda: reg.set_alias('staging', 1)):
        refused(fn, 'models/index.json', says, 'mlproj models repair')


def test_alias_at_a_missing_version_or_a_path_is_refused(reg):
    edit_index(reg, aliases={'production': 7, 'staging': '../../../etc'})
    refused(
        lambda: reg.load('production'),
        'models/index.json',
        "alias 'production' points at version 7",
        'mlproj promote N --to production',
    )
    refused(
        lambda: reg.load('staging'),
        "alias 'staging' holds '../../../etc', not a version number",
        'mlproj promote N --to staging',
    )
    assert reg.load(2).version == 2  # the rest of the registry still works, and promoting mends the alias
    assert reg.set_alias('production', 2) == 2 and reg.load('production').version == 2


@pytest.mark.parametrize('name', ['model.onnx', 'bundle.json'])
def test_missing_file_is_refused_with_what_to_do(reg, name):
    (models(reg) / '1' / name).unlink()
    refused(lambda: reg.load(1), f'models/1/{name} is missing', 'mlproj models prune')


def test_symlink_where_a_file_should_be_is_never_followed(reg, tmp_path):
    outside = tmp_path / 'outside.onnx'
    outside.write_bytes((models(reg) / '1' / 'model.onnx').read_bytes())  # even the right bytes: a link is refused
    (models(reg) / '1' / 'model.onnx').unlink()
    os.symlink(outside, models(reg) / '1' / 'model.onnx')
    refused(lambda: reg.load(1), 'models/1/model.onnx is a symbolic link')
    (models(reg) / '1' / 'model.onnx').unlink()
    os.symlink('/dev/urandom', models(reg) / '1' / 'model.onnx')
    refused(lambda: reg.load(1), 'symbolic link')
    os.symlink('/dev/zero', models(reg) / 'index.json.new')
    os.replace(models(reg) / 'index.json.new', models(reg) / 'index.json')
    refused(reg.index, 'index.json is a symbolic link')


def test_linked_folder_leading_out_of_the_store_is_refused(reg, tmp_path):
    os.rename(models(reg) / '2', tmp_path / 'elsewhere')
    os.symlink(tmp_path / 'elsewhere', models(reg) / '2')
    refused(lambda: reg.load(2), 'lies outside the store')


def test_reads_are_capped_by_the_recorded_size(reg):
    with open(models(reg) / '1' / 'model.onnx', 'ab') as f:
        f.write(b'\0' * 1000)
    refused(lambda: reg.load(1), 'models/1/model.onnx holds', 'more than the', 'allowed')
    with pytest.raises(IntegrityError, match='more than the 10 allowed'):
        reg.store.read(str(models(reg) / 'index.json'), 10)
    assert MAX_READ <= 2**30


def test_device_where_the_index_should_be_is_refused(reg):
    (models(reg) / 'index.json').unlink()
    os.mkfifo(models(reg) / 'index.json')  # would block a plain open() for ever
    refused(reg.index, 'is not a regular file')


def test_repair_rebuilds_the_index_from_the_version_folders(reg):
    (models(reg) / 'index.json').write_bytes(b'{"versions": ')
    (models(reg) / '2' / 'net.json').write_bytes(b'tampered')
    out = reg.repair()
    assert out['versions'] == [1] and out['skipped'][0].startswith('2: ')
    assert reg.load(1).version == 1 and list(models(reg).glob('index.json.damaged-*'))
    assert (
        reg.register(fake_run(Path(reg.store.root).parent / 'runs', 'run3'), fake_evaluation(True)) == 3
    )  # numbers are not reused
    with pytest.raises(RegistryError, match='nothing to repair'):
        reg.repair()


def test_served_model_reason_names_the_damaged_file(reg, tmp_path):
    from deploy.serving import load_model

    (models(reg) / 'index.json').write_bytes(b'')
    _, model, reason = load_model(make_settings(tmp_path), 'production')
    assert model is None and 'models/index.json is empty' in reason


def test_models_endpoint_names_a_damaged_alias(reg, tmp_path):
    from fastapi.testclient import TestClient

    from deploy.app import create_app

    edit_index(reg, aliases={'production': 1, 'staging': '/etc/passwd'})
    with TestClient(create_app(make_settings(tmp_path))) as client:
        r = client.get('/models')
    assert r.status_code == 503 and "alias 'staging' holds '/etc/passwd', not a version number" in r.json()['detail']


# -- the commands, end to end


@pytest.fixture
def cli(reg, tmp_path):
    env = {
        'PATH': '/usr/bin:/bin',
        'MLPROJ_TASK_NAME': 'digits',  # the fixture's models and the assertions are the digits' (any project task)
        'USER': 'ana',
        'MLPROJ_PATHS_STORE': reg.store.root,
        'MLPROJ_PATHS_REPORTS': str(tmp_path / 'r'),
    }
    return lambda *a: subprocess.run([MLPROJ, *a], capture_output=True, text=True, cwd=ROOT, env=env)


def test_promote_with_reason_history_and_rollback_through_the_cli(reg, cli):
    reg.register(
        fake_run(Path(reg.store.root).parent / 'runs', 'bad'), fake_evaluation(False), train_run='bad'
    )  # version 3
    r = cli('promote', '3', '--to', 'production')
    assert (
        r.returncode == 1
        and 'does not meet the acceptance criteria in force (test accuracy 0.5000 is below' in r.stderr
        and r.stderr.count('\n') == 1
    )
    r = cli('promote', '3', '--to', 'production', '--force')
    assert r.returncode == 1 and '--force needs a --reason' in r.stderr
    assert cli('promote', '2', '--to', 'production', '--reason', 'better on the service set').returncode == 0
    r = cli('promote', '3', '--to', 'production', '--force', '--reason', 'hotfix', '--by', 'bo')
    assert r.returncode == 0 and 'production -> version 3' in r.stdout
    r = cli('promote', 'production', '--rollback', '--reason', 'hotfix broke the demo')
    assert r.returncode == 0 and 'production rolled back to version 2' in r.stdout
    assert cli('promote', 'production', '--rollback').stdout.strip().endswith('rolled back to version 1')
    r = cli('promote', 'production', '--rollback')
    assert r.returncode == 1 and 'no earlier version' in r.stderr
    rows = [line.split(None, 7) for line in cli('models', 'history', '--alias', 'production').stdout.splitlines()[1:]]
    assert [
        (row[2], row[3], row[5], row[6], row[7].split()[0]) for row in rows[1:]
    ] == [  # row 0: the fixture's promotion
        ('ana', 'promote', '1', '2', 'False'),
        ('bo', 'promote', '2', '3', 'True'),
        ('ana', 'rollback', '3', '2', 'False'),
        ('ana', 'rollback', '2', '1', 'False'),
    ]
    assert rows[0][3:7] == ['promote', 'production', '-', '1']
    assert rows[1][7].endswith('better on the service set') and rows[3][7].endswith('hotfix broke the demo')


def test_prune_through_the_cli_keeps_aliased_versions(reg, cli):
    for i in range(3, 7):
        reg.register(fake_run(Path(reg.store.root).parent / 'runs', f'run{i}'), fake_evaluation(True))
    r = cli('models', 'prune', '--keep', '2')
    assert r.returncode == 0 and 'removed versions: 3, 4;' in r.stdout, r.stdout
    assert sorted(map(int, reg.index()['versions'])) == [1, 2, 5, 6] and not (models(reg) / '3').exists()
    assert cli('models', 'prune', '--keep', '0').returncode == 1
    r = cli('models')
    assert r.returncode == 0 and [line.split()[0] for line in r.stdout.splitlines()[1:]] == ['1', '2', '5', '6']


def test_damaged_index_through_the_cli_is_one_line_naming_the_file(reg, cli):
    (models(reg) / 'index.json').write_bytes(b'not json')
    for args in (['models'], ['promote', '1', '--to', 'staging'], ['models', 'history']):
        r = cli(*args)
        assert r.returncode == 1 and r.stderr.count('\n') == 1 and 'models/index.json is not valid JSON' in r.stderr
    r = cli('models', 'repair')
    assert r.returncode == 0 and 'versions 1, 2' in r.stdout and cli('models').returncode == 0


def test_index_of_the_previous_registry_is_read_and_carried_forward(reg):
    "A store written before generations, claims and history: read as it is, upgraded by the next change, leftovers cleaned."
    idx = json.loads((models(reg) / 'index.json').read_text())
    old = {
        'versions': {
            v: {k: e[k] for k in ('bundle_sha256', 'registered', 'accepted')} for v, e in idx['versions'].items()
        },
        'aliases': {'production': 1},
    }
    (models(reg) / 'index.json').write_text(json.dumps(old))
    for p in (models(reg) / 'claims').iterdir():
        p.unlink()
    (models(reg) / '.tmp-3-0123abcd').mkdir()  # what the previous registry left when a register failed
    (models(reg) / '.tmp-3-0123abcd' / 'model.onnx').write_bytes(b'half')
    assert reg.load('production').version == 1 and reg.generation() == 0 and reg.history() == []
    assert reg.register(fake_run(Path(reg.store.root).parent / 'runs', 'new'), fake_evaluation(True)) == 3
    assert reg.set_alias('production', 3) == 3 and reg.rollback() == 1
    assert reg.index()['format'] == 2 and reg.generation() == 3
    assert reg.prune(grace=0)['deleted'] == ['models/.tmp-3-0123abcd']
