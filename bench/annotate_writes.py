"""Label writes/s with 50 concurrent annotators over real HTTP, on SQLite and on PostgreSQL, with p50/p99 save latency.

    .venv/bin/python bench/annotate_writes.py [--seconds 8] [--rate 300] [--workers 1 2] [--pg URL|''] [--out reports/bench]

Starts the annotation app with uvicorn (1, then 2 worker processes) for each database in turn and drives it with
simulated annotators (one asyncio HTTP client each: save a label, which answers with the next item) in two modes:
*open loop*, the annotators together offering `--rate` saves/s (Poisson, each on its own schedule; latency from the
time a save was due, so queueing behind a slow server counts), and *closed loop*, every annotator saving again as soon
as its save answers (the capacity; latency is then annotators / writes/s by Little's law). Prints both side by side
with the PostgreSQL/SQLite and 2/1-worker ratios, and writes them to reports/bench/annotate.{json,md}
(`make bench BENCH_ARGS="--only annotate"` runs it too). Goal: >= 300 writes/s with p99 < 100 ms.
`run_annotators` is also what tests/test_annotate.py drives its concurrency checks with.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from mlproj.console import free_port, wait_until

ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def serve(settings, db_url: str, log_path: Path | None = None, workers: int = 1):
    "The annotation app in a uvicorn subprocess on a free port; yields its URL."
    import httpx

    from mlproj.settings import to_env

    port = free_port()
    env = {**os.environ, **to_env(settings), 'MLPROJ_ANNOTATE_DATABASE': db_url}
    log = open(log_path, 'wb') if log_path else tempfile.TemporaryFile()
    proc = subprocess.Popen(
        [
            sys.executable,
            '-m',
            'uvicorn',
            'deploy.annotate.app:app_from_env',
            '--factory',
            '--host',
            '127.0.0.1',
            '--port',
            str(port),
            '--no-access-log',
            '--workers',
            str(workers),
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f'http://127.0.0.1:{port}'
    try:

        def answers():
            if proc.poll() is not None:
                log.seek(0)
                raise RuntimeError(f'the annotation server exited with {proc.returncode}: {log.read().decode()[-800:]}')
            try:
                return httpx.get(f'{url}/openapi.json', timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(answers, 60, 0.1, what='the annotation server starting')
        yield url, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


class _Http:
    "A minimal HTTP/1.1 keep-alive client on asyncio streams: a tenth of httpx's CPU a request, which leaves more of the shared cores to the server."

    def __init__(self, url: str, token: str):
        host, port = url.split('//', 1)[1].rsplit(':', 1)
        self.host, self.port, self.reader, self.writer = host, int(port), None, None
        self.head = f'Host: {host}:{port}\r\nAuthorization: Bearer {token}\r\n'

    async def request(self, method: str, path: str, body: bytes = b'') -> tuple[int, bytes]:
        for attempt in (0, 1):  # the server may have closed an idle connection: open a new one once
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            ctype = 'Content-Type: application/json\r\n' if body else ''
            self.writer.write(
                f'{method} {path} HTTP/1.1\r\n{self.head}{ctype}Content-Length: {len(body)}\r\n\r\n'.encode() + body
            )
            try:
                head = await self.reader.readuntil(b'\r\n\r\n')
                status, length = int(head[9:12]), None
                for line in head.split(b'\r\n')[1:]:
                    if line[:15].lower() == b'content-length:':
                        length = int(line[15:])
                if length is None:
                    raise RuntimeError(f'no content-length in {head[:300]!r}')
                return status, await self.reader.readexactly(length)
            except (asyncio.IncompleteReadError, ConnectionError):
                self.close()
                if attempt:
                    raise

    def close(self):
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def _annotator(url, name, token, labels, rng, out, start, abandon=False, skip_p=0.05):
    "One annotator: its first item, then (once `start` is set) saves until its schedule ends or items run out."
    import orjson

    c = _Http(url, token)
    try:
        try:
            status, body = await c.request('GET', '/api/next')
        finally:
            out['ready'] += 1
        if status != 200:
            out['errors'].append((status, body[:200]))
            return
        a = orjson.loads(body)['next']
        if abandon:  # closes the tab holding a lease
            if a:
                out['abandoned'].append((name, a['id'], a['item_id']))
            return
        loop = asyncio.get_running_loop()
        (
            t0,
            end,
            period,
        ) = (
            await start
        )  # the shared start time, its end, and this annotator's mean time between saves (None: back to back)
        due = t0 + (rng.uniform(0, period) if period else 0)  # its own phase
        while a and due < end:
            if period:
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                else:
                    out['late'] += (
                        1  # its previous save answered after this one was due: the wait counts in the latency
                    )
            sent = due if period else loop.time()  # open loop: from the time the save was due (no coordinated omission)
            label = None if rng.random() < skip_p else rng.randrange(labels)
            status, body = await c.request(
                'POST', f'/api/assignments/{a["id"]}', orjson.dumps({'label': label, 'item_id': a['item_id']})
            )
            done = loop.time()
            if status == 200:
                out['latency'].append(done - sent)
                out['last'] = max(out['last'], done)
                r = orjson.loads(body)
                out['acked'].append(
                    (name, r['saved']['id'], a['item_id'], label)
                )  # a new id when the lease ran out and was claimed again
                a = r['next']
            elif status == 409:
                out['conflicts'] += 1
                a = orjson.loads((await c.request('GET', '/api/next'))[1])['next']
            else:
                out['errors'].append((status, body[:200]))
                return
            due = due + rng.expovariate(1 / period) if period else done
    finally:
        c.close()


def run_annotators(
    url: str,
    tokens: dict[str, str],  # name -> token
    seconds: float,
    labels: int = 10,
    abandon: tuple = (),
    seed: int = 0,
    rate: float | None = None,  # open loop: saves/s offered by all annotators together; None: closed loop, back to back
) -> dict:
    """Every annotator takes an item, then all start together and save for `seconds` (those in `abandon` take one item and leave).

    Closed loop (`rate` None): each saves again as soon as its previous save answers; latency from send to answer.
    Open loop: each annotator's saves are due at Poisson times (mean rate / annotators a second, a phase of its own);
    one is sent when due or, if its previous save has not answered yet, right after it, and its latency runs from the time
    it was due. `seconds` of the result is from the start to the last answer, so writes/s falls below `rate` if the
    server falls behind."""
    out = dict(acked=[], latency=[], conflicts=0, errors=[], abandoned=[], late=0, last=0.0, ready=0)
    working = len([n for n in tokens if n not in abandon])

    async def main():
        rng = random.Random(seed)
        loop = asyncio.get_running_loop()
        start = loop.create_future()
        tasks = [
            asyncio.ensure_future(_annotator(url, n, t, labels, random.Random(rng.random()), out, start, n in abandon))
            for n, t in tokens.items()
        ]
        while out['ready'] < len(tasks):
            await asyncio.sleep(0.01)  # every annotator has its first item
        t0 = loop.time()
        start.set_result((t0, t0 + seconds, working / rate if rate else None))
        await asyncio.gather(*tasks)
        out['abandoned'].sort()  # by name, whatever order they answered in
        out['seconds'] = max(out['last'] - t0, seconds if rate else 0) or seconds
        out['cpu'] = time.process_time()

    import threading

    cpu0 = time.process_time()

    def run():
        try:
            asyncio.run(main())
        except BaseException as e:
            out['errors'].append(('crash', repr(e)))

    t = threading.Thread(target=run)  # a thread of its own: the caller may be inside an event loop (Playwright)
    t.start()
    t.join()
    out['client_cpu'] = out.pop('cpu', time.process_time()) - cpu0
    out.setdefault('seconds', 0.0)
    return out


def make_project(
    settings, db_url: str, n_items: int, n_people: int, overlap: int = 3, lease_seconds: int = 600, name='bench'
):
    "A project over `n_items` synthetic 8x8 digits in the settings' store; returns the annotators' tokens."
    import numpy as np

    from mlproj import annotate as A
    from mlproj.digits import UCI_MEDIA_TYPE, encode_counts
    from mlproj.items import Provenance, put_item
    from mlproj.store import Store

    store = Store(settings.store_url)
    rng = np.random.default_rng(0)
    items = [
        (
            put_item(store, encode_counts(rng.integers(0, 17, (8, 8))), Provenance('synthetic', UCI_MEDIA_TYPE)),
            UCI_MEDIA_TYPE,
        )
        for _ in range(n_items)
    ]
    db = A.open_db(settings, db_url)
    try:
        A.create_project(db, name, [str(d) for d in range(10)], items, overlap=overlap, lease_seconds=lease_seconds)
        return {f'a{i:02d}': A.add_person(db, name, f'a{i:02d}') for i in range(n_people)}
    finally:
        db.close()


@contextmanager
def pg_database(admin_url: str, name: str):
    "A fresh PostgreSQL database `name` on the server of `admin_url`, dropped afterwards; yields its URL."
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    eng = create_engine(admin_url, isolation_level='AUTOCOMMIT')
    with eng.connect() as c:
        c.exec_driver_sql(f'DROP DATABASE IF EXISTS {name} WITH (FORCE)')
        c.exec_driver_sql(f'CREATE DATABASE {name}')
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with eng.connect() as c:
            c.exec_driver_sql(f'DROP DATABASE IF EXISTS {name} WITH (FORCE)')
        eng.dispose()


def _figures(out: dict, cpu: float) -> dict:
    import numpy as np

    lat = np.array(out['latency']) * 1000
    n = len(out['acked'])
    return dict(
        writes=n,
        per_s=n / out['seconds'],
        p50=float(np.percentile(lat, 50)) if n else None,
        p99=float(np.percentile(lat, 99)) if n else None,
        cpu_ms=1000 * cpu / max(n, 1),
        client_cpu_ms=1000 * out['client_cpu'] / max(n, 1),
        late=out['late'],
        conflicts=out['conflicts'],
        errors=len(out['errors']),
    )


def measure(settings, db_url: str, seconds: float, annotators: int, workers: int = 1, rate: float = 300) -> dict:
    "Both modes on one server: open loop at `rate` saves/s offered, then closed loop (the capacity)."
    tokens = make_project(settings, db_url, n_items=max(2000, int(seconds * 500)), n_people=annotators, overlap=3)
    res = {}
    with serve(settings, db_url, workers=workers) as (url, pid):
        run_annotators(url, dict(list(tokens.items())[:10]), 1.0)  # warm up: connections, caches
        for mode, r in (('open', rate), ('closed', None)):
            cpu0 = cpu_seconds(pid, tree=True)
            out = run_annotators(url, tokens, seconds, rate=r)
            res[mode] = _figures(out, cpu_seconds(pid, tree=True) - cpu0)
    return res


def cpu_seconds(pid: int, tree: bool = False) -> float:
    "CPU time (user + system) a process (with `tree`, and its live children: uvicorn's workers) has used so far."
    fields = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()
    own = (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')
    if not tree:
        return own
    kids = Path(f'/proc/{pid}/task/{pid}/children')
    return own + sum(cpu_seconds(int(k), True) for k in (kids.read_text().split() if kids.exists() else []))


def goal_met(r: dict, rate: float) -> bool:
    "300 writes/s sustained with p99 under 100 ms: the capacity reaches it and, offered it, nothing falls behind."
    o, c = r['open'], r['closed']
    return (
        c['per_s'] >= 300
        and rate >= 300
        and o['errors'] == 0
        and o['per_s'] >= 0.95 * rate
        and o['p99'] is not None
        and o['p99'] < 100
    )


def report(res: dict) -> str:
    "The side-by-side table as Markdown."
    m = res['meta']
    lines = [
        f'# Annotation: label writes/s ({m["date"]}, commit {m["commit"] or "none"}{" dirty" if m["dirty"] else ""})',
        '',
        f'{m["annotators"]} simulated annotators over HTTP on loopback, {m["seconds"]:g} s a mode, {m["cores"]} cores shared by the '
        f'server, the load generator and PostgreSQL; load average {m["loadavg"]} at the start. *closed loop*: every annotator saves '
        f"again as soon as its save answers (the capacity; by Little's law latency is then {m['annotators']} / (writes/s)). *open loop*: "
        f'the annotators together offer {m["rate"]:g} saves/s (Poisson, each on its own schedule), latency counted from the time '
        'a save was due, so a server that falls behind shows it (no coordinated omission). wN: N uvicorn workers.',
        '',
        '| database | closed: writes/s | p50 ms | p99 ms | server CPU ms/write | open: writes/s | p50 ms | p99 ms | server CPU ms/write | late sends | goal met |',
        '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|',
    ]
    f = lambda v, d=1: '' if v is None else f'{v:.{d}f}'
    for k, r in res['rows'].items():
        c, o = r['closed'], r['open']
        lines.append(
            f'| {k} | {c["per_s"]:.0f} | {f(c["p50"])} | {f(c["p99"])} | {c["cpu_ms"]:.2f} | {o["per_s"]:.0f} | {f(o["p50"])} | '
            f'{f(o["p99"])} | {o["cpu_ms"]:.2f} | {o["late"]} | {"yes" if goal_met(r, m["rate"]) else "no"} |'
        )
    if res['ratios']:
        lines += ['', '| ratio | closed: writes/s | closed: p99 | open: p99 |', '|---|---:|---:|---:|']
        lines += [
            f'| {k} | {v["closed_per_s"]:.2f}x | {v["closed_p99"]:.2f}x | {v["open_p99"]:.2f}x |'
            for k, v in res['ratios'].items()
        ]
    lines += [
        '',
        f'Goal (>= 300 writes/s with p99 < 100 ms: closed-loop capacity >= 300/s, and at {m["rate"]:g}/s offered, '
        f'at least 95% of it done and p99 < 100 ms): '
        + (
            'met on every row.'
            if res['goal_met']
            else 'NOT met on ' + ', '.join(k for k, r in res['rows'].items() if not goal_met(r, m['rate'])) + '.'
        ),
    ]
    return '\n'.join(lines) + '\n'


def run(
    seconds: float = 8,
    annotators: int = 50,
    workers: tuple = (1, 2),
    rate: float = 300,
    pg: str | None = None,
    out: Path | None = None,
) -> dict:
    "Every row measured in this one run; results (and ratios) as a dict, also written to `out`/annotate.{json,md}."
    import json
    from datetime import datetime, timezone

    from mlproj.settings import load_settings

    git = lambda *a: subprocess.run(['git', '-C', str(ROOT), *a], capture_output=True, text=True).stdout.strip()
    meta = dict(
        date=datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC'),
        commit=git('rev-parse', '--short', 'HEAD') or None,
        dirty=bool(git('status', '--porcelain', '--untracked-files=no')),
        cores=os.cpu_count(),
        loadavg=' '.join(f'{v:.1f}' for v in os.getloadavg()),
        seconds=seconds,
        annotators=annotators,
        rate=rate,
    )
    rows, skipped = {}, None
    if pg:
        try:
            from sqlalchemy import create_engine

            e = create_engine(pg, connect_args={'connect_timeout': 3})
            with e.connect():
                pass
            e.dispose()
        except Exception as e:
            skipped, pg = f'PostgreSQL skipped: {pg} does not answer ({type(e).__name__})', None
            print(skipped, flush=True)
    with tempfile.TemporaryDirectory() as d:
        settings = load_settings(ROOT / 'settings.ini', env={'MLPROJ_PATHS_STORE': f'{d}/store'})
        for w in workers:
            print(f'SQLite, {w} worker(s)', flush=True)
            rows[f'SQLite (WAL) w{w}'] = measure(
                settings, f'sqlite:///{d}/bench{w}.sqlite', seconds, annotators, w, rate
            )
            if pg:
                print(f'PostgreSQL, {w} worker(s)', flush=True)
                with pg_database(pg, 'mlproj_bench_annotate') as url:
                    rows[f'PostgreSQL w{w}'] = measure(settings, url, seconds, annotators, w, rate)
    ratios = {}

    def ratio(name, a, b):
        if a and b:
            ratios[name] = dict(
                closed_per_s=b['closed']['per_s'] / a['closed']['per_s'],
                closed_p99=b['closed']['p99'] / a['closed']['p99'],
                open_p99=b['open']['p99'] / a['open']['p99'],
            )

    for w in workers:
        ratio(f'PostgreSQL / SQLite, w{w}', rows.get(f'SQLite (WAL) w{w}'), rows.get(f'PostgreSQL w{w}'))
    for w in workers[1:]:
        for db in ('SQLite (WAL)', 'PostgreSQL'):
            ratio(f'{db}: w{w} / w{workers[0]}', rows.get(f'{db} w{workers[0]}'), rows.get(f'{db} w{w}'))
    res = dict(
        meta=meta, rows=rows, ratios=ratios, skipped=skipped, goal_met=all(goal_met(r, rate) for r in rows.values())
    )
    if out:
        out.mkdir(parents=True, exist_ok=True)
        (out / 'annotate.json').write_text(json.dumps(res, indent=1) + '\n')
        (out / 'annotate.md').write_text(report(res) + (f'\n{skipped}\n' if skipped else ''))
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--seconds', type=float, default=8, help='length of each mode (open loop, closed loop) on each row')
    ap.add_argument('--annotators', type=int, default=50)
    ap.add_argument('--rate', type=float, default=300, help='open loop: saves/s the annotators offer together')
    ap.add_argument(
        '--workers', type=int, nargs='+', default=[1, 2], help='uvicorn worker counts to compare side by side'
    )
    ap.add_argument(
        '--pg',
        default=os.environ.get('MLPROJ_TEST_DATABASE_URL', 'postgresql+psycopg://postgres@127.0.0.1:5432/test'),
        help="a PostgreSQL URL (a database is created beside it); '' skips PostgreSQL",
    )
    ap.add_argument(
        '--out',
        default=str(ROOT / 'reports' / 'bench'),
        help="folder for annotate.json and annotate.md ('' writes nothing)",
    )
    args = ap.parse_args(argv)
    res = run(
        args.seconds,
        args.annotators,
        tuple(args.workers),
        args.rate,
        args.pg or None,
        Path(args.out) if args.out else None,
    )
    print('\n' + report(res))
    if res['skipped']:
        print(res['skipped'])
    if args.out:
        print(f'written to {args.out}/annotate.json and annotate.md')


if __name__ == '__main__':
    main()
