"""Label writes/s with 50 concurrent annotators over real HTTP, on SQLite and on PostgreSQL, with save latency.

    .venv/bin/python bench/annotate_writes.py [--seconds 20] [--annotators 50] [--pg postgresql+psycopg://postgres@127.0.0.1:5432/test]

Starts the annotation app with uvicorn (1, then 2 worker processes: --workers) for each database in turn, runs simulated annotators (an
asyncio client per annotator: save a label, which answers with the next item), and prints writes/s, p50/p99 save
latency and the PostgreSQL/SQLite ratio measured in the same run. Goal: >= 300 writes/s, p99 < 100 ms.
`run_annotators` is also what tests/test_annotate.py drives its concurrency checks with.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@contextmanager
def serve(settings, db_url: str, log_path: Path | None = None, workers: int = 1):
    "The annotation app in a uvicorn subprocess on a free port; yields its URL."
    import httpx
    from mlproj.settings import to_env
    port = free_port()
    env = {**os.environ, **to_env(settings), 'MLPROJ_ANNOTATE_DATABASE': db_url}
    log = open(log_path, 'wb') if log_path else tempfile.TemporaryFile()
    proc = subprocess.Popen([sys.executable, '-m', 'uvicorn', 'deploy.annotate.app:app_from_env', '--factory', '--host', '127.0.0.1',
                             '--port', str(port), '--no-access-log', '--workers', str(workers)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f'http://127.0.0.1:{port}'
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                log.seek(0)
                raise RuntimeError(f'the annotation server exited with {proc.returncode}: {log.read().decode()[-800:]}')
            try:
                if httpx.get(f'{url}/openapi.json', timeout=1).status_code == 200: break
            except httpx.TransportError: pass
            if time.monotonic() > deadline: raise TimeoutError('the annotation server did not start within 60 s')
            time.sleep(0.1)
        yield url, proc.pid
    finally:
        proc.terminate()
        try: proc.wait(timeout=20)
        except subprocess.TimeoutExpired: proc.kill(); proc.wait()
        log.close()


async def _annotator(url, name, token, seconds, labels, rng, out, abandon=False, skip_p=0.05):
    import httpx
    async with httpx.AsyncClient(base_url=url, headers={'authorization': f'Bearer {token}'}, timeout=30) as c:
        a = (await c.get('/api/next')).json()['next']
        if abandon: # closes the tab holding a lease
            if a: out['abandoned'].append((name, a['id'], a['item_id']))
            return
        end = time.monotonic() + seconds
        while a and time.monotonic() < end:
            label = None if rng.random() < skip_p else rng.randrange(labels)
            t0 = time.perf_counter()
            r = await c.post(f"/api/assignments/{a['id']}", json={'label': label, 'item_id': a['item_id']})
            dt = time.perf_counter() - t0
            if r.status_code == 200:
                out['latency'].append(dt)
                body = r.json()
                out['acked'].append((name, body['saved']['id'], a['item_id'], label)) # a new id when the lease ran out and was claimed again
                a = body['next']
            elif r.status_code == 409:
                out['conflicts'] += 1
                a = (await c.get('/api/next')).json()['next']
            else:
                out['errors'].append((r.status_code, r.text[:200])); return


def run_annotators(url: str, tokens: dict[str, str], # name -> token
                   seconds: float, labels: int = 10, abandon: tuple = (), seed: int = 0) -> dict:
    "Every annotator labels as fast as it can for `seconds` (those in `abandon` take one item and leave)."
    out = dict(acked=[], latency=[], conflicts=0, errors=[], abandoned=[])
    async def main():
        rng = random.Random(seed)
        await asyncio.gather(*[_annotator(url, n, t, seconds, labels, random.Random(rng.random()), out, n in abandon)
                               for n, t in tokens.items()])
    import threading
    t0 = time.perf_counter()
    def run():
        try: asyncio.run(main())
        except BaseException as e: out['errors'].append(('crash', repr(e)))
    t = threading.Thread(target=run) # a thread of its own: the caller may be inside an event loop (Playwright)
    t.start(); t.join()
    out['seconds'] = time.perf_counter() - t0
    return out


def make_project(settings, db_url: str, n_items: int, n_people: int, overlap: int = 3, lease_seconds: int = 600, name='bench'):
    "A project over `n_items` synthetic 8x8 digits in the settings' store; returns the annotators' tokens."
    import numpy as np
    from mlproj import annotate as A
    from mlproj.data import UCI_MEDIA_TYPE, encode_counts
    from mlproj.store import Provenance, Store, put_item
    store = Store(settings.store_url)
    rng = np.random.default_rng(0)
    items = [(put_item(store, encode_counts(rng.integers(0, 17, (8, 8))), Provenance('synthetic', UCI_MEDIA_TYPE)), UCI_MEDIA_TYPE)
             for _ in range(n_items)]
    db = A.open_db(settings, db_url)
    try:
        A.create_project(db, name, [str(d) for d in range(10)], items, overlap=overlap, lease_seconds=lease_seconds)
        return {f'a{i:02d}': A.add_person(db, name, f'a{i:02d}') for i in range(n_people)}
    finally: db.close()


@contextmanager
def pg_database(admin_url: str, name: str):
    "A fresh PostgreSQL database `name` on the server of `admin_url`, dropped afterwards; yields its URL."
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url
    eng = create_engine(admin_url, isolation_level='AUTOCOMMIT')
    with eng.connect() as c:
        c.exec_driver_sql(f'DROP DATABASE IF EXISTS {name} WITH (FORCE)')
        c.exec_driver_sql(f'CREATE DATABASE {name}')
    try: yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with eng.connect() as c: c.exec_driver_sql(f'DROP DATABASE IF EXISTS {name} WITH (FORCE)')
        eng.dispose()


def measure(settings, db_url: str, seconds: float, annotators: int, workers: int = 1) -> dict:
    import numpy as np
    tokens = make_project(settings, db_url, n_items=max(2000, int(seconds * 300)), n_people=annotators, overlap=3)
    with serve(settings, db_url, workers=workers) as (url, pid):
        run_annotators(url, dict(list(tokens.items())[:5]), 1.0) # warm up: connections, caches
        cpu0 = cpu_seconds(pid, tree=True)
        out = run_annotators(url, tokens, seconds)
        cpu = cpu_seconds(pid, tree=True) - cpu0
    lat = np.array(out['latency']) * 1000
    n = len(out['acked'])
    return dict(writes=n, per_s=n / out['seconds'], p50=float(np.percentile(lat, 50)), p99=float(np.percentile(lat, 99)),
                cpu_ms=1000 * cpu / n, conflicts=out['conflicts'], errors=len(out['errors']))


def cpu_seconds(pid: int, tree: bool = False) -> float:
    "CPU time (user + system) a process (with `tree`, and its live children: uvicorn's workers) has used so far."
    fields = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()
    own = (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')
    if not tree: return own
    kids = Path(f'/proc/{pid}/task/{pid}/children')
    return own + sum(cpu_seconds(int(k), True) for k in (kids.read_text().split() if kids.exists() else []))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--seconds', type=float, default=20)
    ap.add_argument('--annotators', type=int, default=50)
    ap.add_argument('--workers', type=int, nargs='+', default=[1, 2], help='uvicorn worker counts to compare side by side')
    ap.add_argument('--pg', default=os.environ.get('MLPROJ_TEST_DATABASE_URL'), help='a PostgreSQL URL (a database is created beside it)')
    args = ap.parse_args(argv)
    from mlproj.settings import load_settings
    rows = {}
    with tempfile.TemporaryDirectory() as d:
        settings = load_settings(ROOT / 'settings.ini', env={'MLPROJ_PATHS_STORE': f'{d}/store'})
        for w in args.workers:
            rows[f'SQLite (WAL) w{w}'] = measure(settings, f'sqlite:///{d}/bench{w}.sqlite', args.seconds, args.annotators, w)
            if args.pg:
                with pg_database(args.pg, 'mlproj_bench_annotate') as url:
                    rows[f'PostgreSQL w{w}'] = measure(settings, url, args.seconds, args.annotators, w)
    print(f'{args.annotators} annotators over HTTP for {args.seconds:.0f} s, wN: N uvicorn workers, {os.cpu_count()} cores (client on the same machine)')
    print(f"load average before: {os.getloadavg()[0]:.1f} (other work on the machine slows both columns alike)")
    print(f"{'database':18} {'writes':>7} {'writes/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'server CPU ms/write':>20} {'409s':>5} {'errors':>6}")
    for k, r in rows.items():
        print(f"{k:18} {r['writes']:7d} {r['per_s']:9.0f} {r['p50']:7.1f} {r['p99']:7.1f} {r['cpu_ms']:20.2f} {r['conflicts']:5d} {r['errors']:6d}")
    for w in args.workers:
        s, p = rows[f'SQLite (WAL) w{w}'], rows.get(f'PostgreSQL w{w}')
        if p: print(f"w{w} PostgreSQL/SQLite: writes/s x{p['per_s'] / s['per_s']:.2f}, p99 x{p['p99'] / s['p99']:.2f}")
        if w != args.workers[0]:
            for db in ('SQLite (WAL)', 'PostgreSQL'):
                a, b = rows.get(f'{db} w{args.workers[0]}'), rows.get(f'{db} w{w}')
                if a and b: print(f"{db} w{w}/w{args.workers[0]}: writes/s x{b['per_s'] / a['per_s']:.2f}, p99 x{b['p99'] / a['p99']:.2f}")
    ok = all(r['per_s'] >= 300 and r['p99'] < 100 for r in rows.values())
    print('goal (>= 300 writes/s, p99 < 100 ms):', 'met' if ok else 'NOT met')


if __name__ == '__main__':
    main()
