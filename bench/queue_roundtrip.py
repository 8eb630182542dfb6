"""No-op jobs through the queue, embedded Redis beside a real Redis, measured in one run.

    .venv/bin/python bench/queue_roundtrip.py [--redis redis://127.0.0.1:6379/14] [-n 300] [--jobs 1000] [--heartbeats 2,5]

Round trip: submit one noop job, wait for its result (p50, p99). Throughput: --jobs noop jobs submitted at once,
2 supervised worker processes, until the last is done. SIGKILL: a noop job sleeping 3 s, its worker killed 1 s in,
time until the job is done (embedded, for each heartbeat timeout given). The CPU each process spends a job (client,
workers, Redis) says what the machine's cores allow when nothing else runs on them. Goals: p50 <= 20 ms embedded, >= 500 jobs/s
on Redis; the table ends with each figure's ratio to its goal (>= 1 meets it)."""

import argparse
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil
import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from mlproj.queue import JobQueue
from mlproj.redis_server import EmbeddedServer
from mlproj.settings import load_settings, to_env
from mlproj.workers import Supervisor

GOAL_P50_MS, GOAL_RATE = 20.0, 500.0


def workers(settings, url, n=2):
    return Supervisor(
        n, {**os.environ, **to_env(settings), 'MLPROJ_QUEUE_URL': url}, log=open(os.devnull, 'wb'), say=lambda m: None
    ).start()


def measure(settings, url, n, jobs):
    jq = JobQueue(settings, url)
    sup = workers(settings, url)
    try:
        for _ in range(4):
            jq.wait(jq.submit('noop')['id'], timeout=120)  # both workers up
        times = []
        for _ in range(n):
            t = time.perf_counter()
            jq.wait(jq.submit('noop')['id'], timeout=60)
            times.append(time.perf_counter() - t)
        times.sort()
        procs = dict(
            client=[psutil.Process()],
            workers=[psutil.Process(p.pid) for p in sup.procs],
            redis=[psutil.Process(jq.r.info('server')['process_id'])],
        )
        cpu = lambda: {k: sum(sum(p.cpu_times()[:2]) for p in ps) for k, ps in procs.items()}
        before, t = cpu(), time.perf_counter()
        ids = [jq.submit('noop')['id'] for _ in range(jobs)]
        submitted = time.perf_counter() - t
        for i in ids:
            jq.wait(i, timeout=600)
        total = time.perf_counter() - t
        used = {k: (v - before[k]) / jobs * 1000 for k, v in cpu().items()}
        assert all(jq.get(i)['attempts'] == 1 for i in ids)  # each ran once
        return dict(
            p50=statistics.median(times) * 1000,
            p99=times[int(0.99 * (len(times) - 1))] * 1000,
            rate=jobs / total,
            submit_rate=jobs / submitted,
            **{f'cpu_{k}': v for k, v in used.items()},
            cpu_rate=os.cpu_count() * 1000 / sum(used.values()),
        )
    finally:
        sup.stop()
        jq.close()


def kill_to_done(settings, url, sleep=3.0, kill_after=1.0):
    "Seconds from SIGKILL of the worker running a noop job of `sleep` s (killed `kill_after` s in) to the job done."
    jq = JobQueue(settings, url)
    sup = workers(settings, url)
    try:
        for _ in range(4):
            jq.wait(jq.submit('noop')['id'], timeout=120)
        job = jq.submit('noop', {'sleep': sleep})
        while (rec := jq.get(job['id']))['state'] != 'running':
            time.sleep(0.01)
        time.sleep(kill_after)
        os.kill(int(rec['worker'].rsplit(':', 1)[1]), signal.SIGKILL)
        t = time.perf_counter()
        done = jq.wait(job['id'], timeout=300)
        assert done['state'] == 'done' and done['attempts'] == 2, done
        return time.perf_counter() - t
    finally:
        sup.stop()
        jq.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        '--redis',
        default=os.environ.get('MLPROJ_BENCH_REDIS_URL', 'redis://127.0.0.1:6379/14'),
        help='a real Redis (a db of its own: it is flushed)',
    )
    ap.add_argument('-n', type=int, default=300, help='round trips')
    ap.add_argument('--jobs', type=int, default=1000, help='jobs for the throughput run')
    ap.add_argument(
        '--heartbeats', default='2,5', help='heartbeat timeouts (s) to measure SIGKILL to done with; empty: skip'
    )
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix='qbench'))
    env = {
        'MLPROJ_PATHS_REPORTS': str(tmp / 'reports'),
        'MLPROJ_PATHS_STORE': str(tmp / 'store'),
        'MLPROJ_QUEUE_DATA': str(tmp / 'q'),
    }
    settings = load_settings(ROOT / 'settings.ini', env=env)
    results, kills = {}, {}
    try:
        with EmbeddedServer(tmp / 'q') as server:
            results['embedded'] = measure(settings, server.url, a.n, a.jobs)
            for hb in filter(None, a.heartbeats.split(',')):
                kills[hb] = kill_to_done(
                    load_settings(ROOT / 'settings.ini', env={**env, 'MLPROJ_QUEUE_HEARTBEAT_TIMEOUT': hb}), server.url
                )
        try:
            redis.Redis.from_url(a.redis).flushdb()
            results['redis'] = measure(
                load_settings(ROOT / 'settings.ini', env={**env, 'MLPROJ_QUEUE_URL': a.redis}), a.redis, a.n, a.jobs
            )
            redis.Redis.from_url(a.redis).flushdb()
        except redis.ConnectionError as e:
            print(f'real Redis at {a.redis} not reachable ({e}); embedded only')
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    cols = list(results)
    print(
        f'{"no-op jobs, 2 workers":32}'
        + ''.join(f'{c:>12}' for c in cols)
        + ('  redis/embedded' if len(cols) == 2 else '')
    )
    for key, label in [
        ('p50', 'round trip p50 (ms)'),
        ('p99', 'round trip p99 (ms)'),
        ('rate', 'jobs/s (submitted at once)'),
        ('submit_rate', 'submits/s (one client)'),
        ('cpu_client', 'CPU ms a job: client'),
        ('cpu_workers', 'CPU ms a job: 2 workers'),
        ('cpu_redis', 'CPU ms a job: Redis server'),
        ('cpu_rate', 'jobs/s the cores allow (CPU)'),
    ]:
        vals = [results[c][key] for c in cols]
        print(
            f'{label:32}'
            + ''.join(f'{v:>12.2f}' if v < 10 else f'{v:>12.1f}' for v in vals)
            + (f'{vals[1] / vals[0]:>16.2f}' if len(vals) == 2 else '')
        )
    print(f'\n{"against the goals":32}{"measured":>12}{"goal":>12}{"ratio":>16}')
    for c in cols:
        p50, rate = results[c]['p50'], results[c]['rate']
        print(f'{"p50 (ms), " + c + " (at most)":32}{p50:>12.1f}{GOAL_P50_MS:>12.0f}{GOAL_P50_MS / p50:>16.2f}')
        print(f'{"jobs/s, " + c + " (at least)":32}{rate:>12.1f}{GOAL_RATE:>12.0f}{rate / GOAL_RATE:>16.2f}')
        print(
            f'{"jobs/s by CPU, " + c:32}{results[c]["cpu_rate"]:>12.1f}{GOAL_RATE:>12.0f}{results[c]["cpu_rate"] / GOAL_RATE:>16.2f}'
        )
    for hb, s in kills.items():
        print(
            f'{f"SIGKILL to done, heartbeat {hb} s":32}{s:>12.1f} s (the job had 2.0 s left: recovery took {s - 2:.1f} s)'
        )


if __name__ == '__main__':
    main()
