"""Dataset versions as data grows: splits decided by item hash stay put between a parent and a child, lineage from a
model to its raw items, and `mlproj data show|diff|list|pack` through the real CLI."""

import subprocess

import numpy as np
import pytest
from conftest import ROOT

from mlproj.data import build_benchmark, diff_versions, hash_split, load_splits, pack_version
from mlproj.digits import UCI_MEDIA_TYPE, encode_counts
from mlproj.items import Provenance, put_item
from mlproj.lineage import lineage
from mlproj.store import Store
from mlproj.task import load_task
from mlproj.versions import Example, get_version, put_version

MLPROJ = str(ROOT / '.venv' / 'bin' / 'mlproj')


def _new_items(st, n, start=0):
    "n distinct synthetic 8x8 items, as collected from a web site."
    rng = np.random.default_rng(start)
    return [
        put_item(
            st,
            encode_counts(rng.integers(0, 17, (8, 8))),
            Provenance(f'https://digits.example/{start + i}.png', UCI_MEDIA_TYPE),
        )
        for i in range(n)
    ]


def _grow(st, parent, new, relabel=0, drop=0):
    "A child of `parent` with its items (some relabelled, the last `drop` removed) and `new` items split by hash."
    old = get_version(st, parent)['examples']
    kept = [
        Example(e.sha256, (e.label + 1) % 10, e.split, 'annotation consensus') if i < relabel else e
        for i, e in enumerate(old[: len(old) - drop])
    ]
    return put_version(
        st,
        [*kept, *(Example(d, int(d[0], 16) % 10, hash_split(d, 0.1, 0.2), 'annotation consensus') for d in new)],
        label_source='annotation consensus',
        parent=parent,
        description='grown',
    )


def test_items_keep_their_split_from_parent_to_child_as_data_grows(tmp_path):
    st = Store(str(tmp_path))
    v0 = build_benchmark(st, 'digits')
    v1 = _grow(st, v0, _new_items(st, 300), relabel=20, drop=10)
    v2 = _grow(st, v1, _new_items(st, 2000, start=300))
    splits = [{e.sha256: e.split for e in get_version(st, v)['examples']} for v in (v0, v1, v2)]
    for a, b in [(0, 1), (1, 2), (0, 2)]:
        common = splits[a].keys() & splits[b].keys()
        assert len(common) > 1700 and all(splits[a][s] == splits[b][s] for s in common)
    # the new items were split by the same rule: about 20% test, as the benchmark
    new = [s for s in splits[2] if s not in splits[1]]
    assert 0.15 < np.mean([splits[2][s] == 'test' for s in new]) < 0.25
    # and a version that would move an item from test to train is refused
    e = next(e for e in get_version(st, v2)['examples'] if e.split == 'test')
    with pytest.raises(ValueError, match='change split'):
        put_version(st, [Example(e.sha256, e.label, 'train')], label_source='x', parent=v2)


def test_diff_counts_added_removed_relabelled_per_class_and_split(tmp_path):
    st = Store(str(tmp_path))
    v0 = build_benchmark(st, 'digits')
    new = _new_items(st, 50)
    v1 = _grow(st, v0, new, relabel=7, drop=4)
    d = diff_versions(st, v0, v1)
    assert (d['added'], d['removed'], d['relabelled'], d['moved']) == (50, 4, 7, 0)
    assert d['n_b'] == d['n_a'] + 50 - 4
    for key in ('added', 'removed', 'relabelled'):
        assert sum(r[key] for r in d['per_split'].values()) == d[key]
        assert sum(r[key] for r in d['per_class'].values()) == d[key]
    for rows in (d['per_split'], d['per_class']):
        assert sum(r['b'] for r in rows.values()) == d['n_b']
    back = diff_versions(st, v1, v0)
    assert (back['added'], back['removed'], back['relabelled']) == (4, 50, 7)


def test_lineage_follows_a_model_to_its_dataset_version_and_raw_items(trained):
    s, _, ev = trained
    st = Store(s.store_url)
    L = lineage(st, '1')
    assert L['model']['version'] == 1 and L['model']['dataset_version'] == ev['dataset_version']
    assert L['dataset']['id'] == ev['dataset_version'] and 1 in L['models']
    generated = len(load_task('digits').benchmark().generated)  # the typeset digits in the training split
    assert L['items']['n'] == L['dataset']['n'] == 1797 + generated and L['items']['missing'] == []
    assert L['items']['media_types'] == {UCI_MEDIA_TYPE: 1797, 'image/png': generated}


def _run(env, *args):
    return subprocess.run([MLPROJ, *args], capture_output=True, text=True, cwd=ROOT, env=env)


def test_data_commands_build_show_diff_list_and_pack(tmp_path):
    env = {
        'PATH': '/usr/bin:/bin',
        'MLPROJ_TASK_NAME': 'digits',  # the fixture's models and the assertions are the digits' (any project task)
        'MLPROJ_PATHS_STORE': str(tmp_path / 'store'),
        'MLPROJ_PATHS_REPORTS': str(tmp_path / 'r'),
    }
    r = _run(env, 'data')
    assert r.returncode == 0 and 'dataset version' in r.stdout, r.stderr
    v0 = r.stdout.split('dataset version ')[1][:16]
    st = Store(str(tmp_path / 'store'))
    v1 = _grow(st, v0, _new_items(st, 30), relabel=3, drop=2)
    r = _run(env, 'data', 'diff', v0[:8], v1)
    assert r.returncode == 0 and '30 added, 2 removed, 3 relabelled, 0 moved between splits' in r.stdout, (
        r.stdout + r.stderr
    )
    r = _run(env, 'data', 'show', v1)
    assert (
        r.returncode == 0
        and f'parent: {v0}' in r.stdout
        and 'digits.example (30)' in r.stdout
        and 'packed: no' in r.stdout
    )
    r = _run(env, 'data', 'pack', v1)
    assert r.returncode == 0 and 'every item checked' in r.stdout
    X = load_splits(st, v1, packed=True)
    Y = load_splits(st, v1, packed=False)
    assert all(np.array_equal(X[k][0], Y[k][0]) and np.array_equal(X[k][1], Y[k][1]) for k in X)
    r = _run(env, 'data', 'list')
    assert r.returncode == 0 and v0 in r.stdout and v1 in r.stdout
    # bad input: one line, non-zero exit
    r = _run(env, 'data', 'diff', v0, 'ffffff')
    assert r.returncode == 1 and r.stderr.count('\n') == 1 and "no dataset version 'ffffff'" in r.stderr
    r = _run(env, 'data', 'show', 'nosuchthing')
    assert r.returncode == 1 and r.stderr.count('\n') == 1 and 'names no dataset version and no model' in r.stderr


def test_packed_version_on_s3_is_verified(s3_store_url):
    from mlproj.store import IntegrityError

    st = Store(s3_store_url)
    ds = _new_items(st, 20)
    v = put_version(st, [Example(d, 1, hash_split(d, 0.1, 0.2)) for d in ds], label_source='test')
    path = pack_version(st, v)
    X = load_splits(st, v, packed=True)
    assert sum(len(y) for _, y in X.values()) == 20
    st.write(path, st.read(path)[:-100])
    with pytest.raises(IntegrityError, match='pack'):
        load_splits(st, v)
