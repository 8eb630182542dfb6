"""The registry under concurrent writers: real processes interleave registers, promotions, rollbacks and prunes,
then the invariants are checked: numbers unique and dense, each number owning the bundle its caller wrote,
every alias move in the history, nothing lost or left behind, the registry usable afterwards."""

import json
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from mlproj.registry import ALIASES, BUNDLE_FILES, Registry, RegistryError
from mlproj.store import Store

# refusals a racing client may meet and must be told about: none of them is a lost or wedged registry
EXPECTED = (
    'did not pass acceptance',
    'no model version or alias',
    'was pruned',
    'no earlier version',
    'which has been removed',
    'no model is registered',
    'no registered version passed',
)


def fake_evaluation(passed: bool) -> dict:
    "An evaluation result as `evaluate_run` gives it (the registry stores it; it does not judge the bytes)."
    return dict(
        split='test',
        dataset_version='d1',
        criteria={},
        model=dict(n=10, accuracy=0.99 if passed else 0.5, macro_f1=0.99, per_class_recall=[1.0] * 10),
        baseline=dict(accuracy=0.1, macro_f1=0.02, answer=1),
        acceptance=dict(passed=passed, failures=[] if passed else ['test accuracy 0.5 is below 0.97']),
        service_like=dict(n=40, accuracy=0.98 if passed else 0.5, dataset_version='s1'),
    )


def bundle_bytes(nonce: str, name: str) -> bytes:
    return f'{name} of {nonce}\n'.encode() * 3


def fake_run(root: Path, nonce: str) -> Path:
    "A training run folder whose files only this caller could have written."
    run = root / nonce
    run.mkdir(parents=True)
    for f in BUNDLE_FILES:
        (run / f).write_bytes(bundle_bytes(nonce, f))
    return run


def worker(url: str, wid: int, ops: int, seed: int, runs: str, out: str, go):
    "One client: a random mix of operations on the shared registry; logs what each call answered."
    reg, rng = Registry(Store(url)), random.Random(seed)
    log = dict(registered=[], moves=[], prunes=0, loads=0, refused=[], errors=[])
    go.wait(120)  # every client starts at once, so that they interleave
    for i in range(ops):
        r, op = rng.random(), f'w{wid}-op{i}'
        try:
            if r < 0.5:
                nonce = f'{op}-{os.getpid()}'
                v = reg.register(
                    fake_run(Path(runs), nonce), fake_evaluation(rng.random() < 0.85), by=f'w{wid}', train_run=nonce
                )
                log['registered'].append([v, nonce])
            elif r < 0.78:
                versions = list(reg.index()['versions'])
                if not versions:
                    continue
                alias = rng.choice(ALIASES)
                v = reg.set_alias(alias, rng.choice(versions), by=f'w{wid}', reason=op)
                log['moves'].append([alias, v, op])
            elif r < 0.86:
                alias = rng.choice(ALIASES)
                v = reg.rollback(alias, by=f'w{wid}', reason=op)
                log['moves'].append([alias, v, op])
            elif r < 0.93:
                reg.prune(keep=rng.randint(3, 8), by=f'w{wid}')
                log['prunes'] += 1
            else:
                mine = [(v, n) for v, n in log['registered'] if str(v) in reg.index()['versions']]
                if mine:
                    v, nonce = rng.choice(mine)
                    try:
                        b = reg.load(v)
                    except RegistryError as e:
                        if 'was pruned' not in str(e) and 'is missing' not in str(e):
                            raise
                    else:
                        assert b.files['model.onnx'] == bundle_bytes(nonce, 'model.onnx'), (
                            f'version {v} holds another bundle'
                        )
                log['loads'] += 1
        except RegistryError as e:
            (log['refused'] if any(x in str(e) for x in EXPECTED) else log['errors']).append(f'{op}: {e}')
        except Exception as e:
            log['errors'].append(f'{op}: {type(e).__name__}: {e}')
    log['conflicts'] = reg.conflicts
    Path(out).write_text(json.dumps(log))


def run_clients(url: str, tmp: Path, processes: int, ops: int) -> list[dict]:
    "Start `processes` real processes (spawned: nothing shared but the store) and collect their logs."
    ctx = multiprocessing.get_context('spawn')
    go = ctx.Event()
    procs = [
        ctx.Process(target=worker, args=(url, w, ops, 1000 + w, str(tmp / 'runs'), str(tmp / f'log{w}.json'), go))
        for w in range(processes)
    ]
    for p in procs:
        p.start()
    go.set()
    for p in procs:
        p.join(600)
    assert [p.exitcode for p in procs] == [0] * processes
    return [json.loads((tmp / f'log{w}.json').read_text()) for w in range(processes)]


def check_invariants(reg: Registry, logs: list[dict]) -> Counter:
    "Every invariant of concurrent use; returns counts of what was checked (violations fail the test)."
    errors = [e for log in logs for e in log['errors']]
    assert errors == [], f'{len(errors)} unexpected errors, e.g. {errors[:5]}'
    registered = [tuple(x) for log in logs for x in log['registered']]
    numbers = [v for v, _ in registered]
    assert len(numbers) == len(set(numbers)), (
        f'duplicated version numbers: {[v for v, n in Counter(numbers).items() if n > 1]}'
    )
    idx = reg.index()
    assert set(numbers) == set(range(1, len(numbers) + 1)), 'version numbers are not dense'
    assert {int(v) for v in idx['versions']} | {int(v) for v in idx['retired']} == set(numbers)
    assert all(r['why'] == 'pruned' for r in idx['retired'].values())  # nothing abandoned: no writer crashed
    for v, nonce in registered:  # each number owns exactly the bundle its caller wrote
        if str(v) in idx['versions']:
            b = reg.load(v)
            assert b.manifest['train_run'] == nonce and all(
                b.files[f] == bundle_bytes(nonce, f) for f in BUNDLE_FILES
            ), v
    moves = [tuple(x) for log in logs for x in log['moves']]
    hist = reg.history()
    assert len(hist) == len(moves), f'{len(moves)} successful alias moves, {len(hist)} in the history'
    by_reason = {h['reason']: h for h in hist}
    assert all(by_reason[op]['alias'] == a and by_reason[op]['to'] == v for a, v, op in moves)
    gens = [h['generation'] for h in hist]
    assert gens == sorted(set(gens)) and gens[-1] <= idx['generation']
    for alias in ALIASES:  # each move starts where the previous one left the alias
        chain = [h for h in hist if h['alias'] == alias]
        assert all(b['from'] == a['to'] for a, b in zip(chain, chain[1:])), f'a move of {alias} was lost'
        assert idx['aliases'].get(alias) == (chain[-1]['to'] if chain else None)
    return Counter(
        registers=len(registered),
        moves=len(moves),
        prunes=sum(log['prunes'] for log in logs),
        loads=sum(log['loads'] for log in logs),
        refused=sum(len(log['refused']) for log in logs),
        pruned=len(idx['retired']),
        generation=idx['generation'],
        conflicts=sum(log['conflicts'] for log in logs),
    )


def check_usable_and_clean(reg: Registry, tmp: Path):
    "After the storm: a register gets the next number, aliases move, and a cleanup leaves no temporary file."
    n = max(map(int, [*reg.index()['versions'], *reg.index()['retired']]))
    assert reg.register(fake_run(tmp / 'runs', 'after'), fake_evaluation(True), train_run='after') == n + 1
    assert reg.set_alias('production', n + 1, reason='after') == n + 1 and reg.load('production').version == n + 1
    reg.prune(grace=0)
    models = reg.store.path('models')
    assert not [p for p in reg.store.fs.find(models, withdirs=True) if '.tmp-' in p], 'temporary files left behind'
    reg.store.fs.invalidate_cache()
    folders = {p.rstrip('/').rsplit('/', 1)[-1] for p in reg.store.fs.ls(models, detail=False)}
    assert {f for f in folders if f.isdigit()} == set(reg.index()['versions']), (
        'a folder of a removed version is left behind'
    )


def stress(url: str, tmp: Path, processes: int, ops: int):
    t0 = time.perf_counter()
    logs = run_clients(url, tmp, processes, ops)
    reg = Registry(Store(url))
    counts = check_invariants(reg, logs)
    check_usable_and_clean(reg, tmp)
    print(
        f'\n{url.split(":")[0] if "://" in url else "folder"}: {processes} processes x {ops} operations = {processes * ops} '
        f'in {time.perf_counter() - t0:.1f} s: {dict(counts)}; 0 invariant violations'
    )
    assert counts['registers'] > processes * ops // 4 and counts['moves'] > processes * ops // 10  # the mix really ran


def test_concurrent_writers_keep_the_registry_consistent(tmp_path):
    stress(str(tmp_path / 'store'), tmp_path, processes=4, ops=150)


@pytest.mark.full
def test_concurrent_writers_keep_the_registry_consistent_at_scale(tmp_path):
    stress(str(tmp_path / 'store'), tmp_path, processes=6, ops=250)


KILLED_REGISTER = """
import os, signal, sys
from mlproj.registry import Registry
from mlproj.store import Store
import mlproj.store
sys.path.insert(0, sys.argv[3])
from test_registry_concurrency import fake_evaluation
real = Store.write
def write(self, path, data, sync=False):
    if path.endswith('bundle.json'): os.kill(os.getpid(), signal.SIGKILL)  # dies with the bundle half written
    return real(self, path, data, sync)
Store.write = write
Registry(Store(sys.argv[1])).register(sys.argv[2], fake_evaluation(True), train_run='killed')
"""


def test_a_writer_killed_mid_register_wedges_nothing(tmp_path):
    url = str(tmp_path / 'store')
    reg = Registry(Store(url))
    assert reg.register(fake_run(tmp_path / 'runs', 'first'), fake_evaluation(True), train_run='first') == 1
    r = subprocess.run(
        [
            sys.executable,
            '-c',
            KILLED_REGISTER,
            url,
            str(fake_run(tmp_path / 'runs', 'killed')),
            str(Path(__file__).parent),
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == -signal.SIGKILL, r.stderr
    assert (
        tmp_path / 'store' / 'models' / 'claims' / '2.json'
    ).exists()  # it had claimed 2 and written part of its bundle
    assert list(reg.index()['versions']) == ['1'] and reg.load().version == 1  # readers do not see it
    assert reg.register(fake_run(tmp_path / 'runs', 'next'), fake_evaluation(True), train_run='next') == 3
    assert reg.prune()['abandoned'] == []  # within the grace period an unfinished registration is left alone
    out = reg.prune(grace=0)
    assert out['abandoned'] == [2] and 'models/2' in out['deleted']
    assert not (tmp_path / 'store' / 'models' / '2').exists()
    assert sorted(reg.index()['versions']) == ['1', '3'] and reg.load(3).manifest['train_run'] == 'next'
