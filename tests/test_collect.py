"""The folder import through the real CLI: images stored with provenance, other files counted, bad input one line
with nothing lost. The crawler (`collect crawl`, an optional stage) is tests/test_crawl.py."""

import io
import os
import subprocess

from conftest import ROOT
from PIL import Image

from mlproj.items import item_provenance
from mlproj.store import Store, sha256

MLPROJ = str(ROOT / '.venv' / 'bin' / 'mlproj')


def png(seed: int, size=12) -> bytes:
    b = io.BytesIO()
    Image.new('L', (size, size), seed % 256).save(b, 'PNG')
    return b.getvalue()


def _cli(env, *args, cwd=ROOT):
    env = {**env, **{k: v for k, v in os.environ.items() if k == 'PYTHONPATH'}}  # a worktree's code, where set
    return subprocess.run([MLPROJ, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=120)


def test_folder_import_stores_images_with_provenance_and_bad_input_gets_one_line(tmp_path):
    env = {
        'PATH': '/usr/bin:/bin',
        'MLPROJ_TASK_NAME': 'digits',  # the fixture's models and the assertions are the digits' (any project task)
        'MLPROJ_PATHS_STORE': str(tmp_path / 'store'),
        'MLPROJ_PATHS_REPORTS': str(tmp_path / 'r'),
    }
    folder = tmp_path / 'in'
    (folder / 'a' / 'b').mkdir(parents=True)
    (folder / 'one.png').write_bytes(png(1))
    (folder / 'a' / 'b' / 'two.png').write_bytes(png(2))
    (folder / 'a' / 'notes.txt').write_text('hello')
    (folder / 'a' / 'fake.png').write_bytes(b'\x89PNG\r\n\x1a\n but not really')
    r = _cli(env, 'collect', 'folder', str(folder))
    assert r.returncode == 0 and '4 files: 2 images stored' in r.stdout and 'skipped 2 not images' in r.stdout, (
        r.stdout + r.stderr
    )
    store = Store(str(tmp_path / 'store'))
    assert item_provenance(store, sha256(png(2)))['source'] == (folder / 'a' / 'b' / 'two.png').resolve().as_uri()
    files = sorted(store.fs.find(store.path('raw')))
    (tmp_path / 'texts').mkdir()
    (tmp_path / 'texts' / 'x.csv').write_text('1,2')
    for args in [
        ('collect', 'folder', str(folder / 'a' / 'notes.txt')),
        ('collect', 'folder', str(tmp_path / 'nothing-here'), '-q'),
        ('collect', 'folder', str(tmp_path / 'texts'), '-q'),
        ('collect',),  # no source
    ]:
        r = _cli(env, *args)
        assert r.returncode == 1 and r.stderr.count('\n') == 1 and r.stderr.startswith('mlproj: error: '), (
            args,
            r.stderr,
        )
    assert 'no image in' in _cli(env, 'collect', 'folder', str(tmp_path / 'texts'), '-q').stderr
    assert sorted(store.fs.find(store.path('raw'))) == files
