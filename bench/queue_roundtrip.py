"""No-op jobs through the queue, embedded Redis beside a real Redis, measured in one run.

    .venv/bin/python bench/queue_roundtrip.py [--redis redis://127.0.0.1:6379/14] [-n 300] [--jobs 1000]

Round trip: submit one noop job, wait for its result (p50, p99). Throughput: --jobs noop jobs submitted at once,
2 supervised worker processes, until the last is done. Goals: p50 <= 20 ms embedded, >= 500 jobs/s on Redis."""
import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from mlproj.queue import EmbeddedServer, JobQueue, Supervisor  # noqa: E402
from mlproj.settings import load_settings, to_env  # noqa: E402


def measure(settings, url, n, jobs):
    jq = JobQueue(settings, url)
    sup = Supervisor(2, {**os.environ, **to_env(settings), 'MLPROJ_QUEUE_URL': url}, log=open(os.devnull, 'wb'), say=lambda m: None).start()
    try:
        jq.wait(jq.submit('noop')['id'], timeout=120) # both workers up
        jq.wait(jq.submit('noop')['id'], timeout=120)
        times = []
        for _ in range(n):
            t = time.perf_counter()
            jq.wait(jq.submit('noop')['id'], timeout=60)
            times.append(time.perf_counter() - t)
        times.sort()
        t = time.perf_counter()
        ids = [jq.submit('noop')['id'] for _ in range(jobs)]
        submitted = time.perf_counter() - t
        for i in ids: jq.wait(i, timeout=600)
        total = time.perf_counter() - t
        return dict(p50=statistics.median(times) * 1000, p99=times[int(0.99 * (len(times) - 1))] * 1000,
                    rate=jobs / total, submit_rate=jobs / submitted)
    finally:
        sup.stop(); jq.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--redis', default=os.environ.get('MLPROJ_BENCH_REDIS_URL', 'redis://127.0.0.1:6379/14'), help='a real Redis (a db of its own: it is flushed)')
    ap.add_argument('-n', type=int, default=300, help='round trips')
    ap.add_argument('--jobs', type=int, default=1000, help='jobs for the throughput run')
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix='qbench'))
    env = {'MLPROJ_PATHS_REPORTS': str(tmp / 'reports'), 'MLPROJ_PATHS_STORE': str(tmp / 'store'), 'MLPROJ_QUEUE_DATA': str(tmp / 'q')}
    settings = load_settings(ROOT / 'settings.ini', env=env)
    results = {}
    try:
        with EmbeddedServer(tmp / 'q') as server:
            results['embedded'] = measure(settings, server.url, a.n, a.jobs)
        try:
            redis.Redis.from_url(a.redis).flushdb()
            results['redis'] = measure(load_settings(ROOT / 'settings.ini', env={**env, 'MLPROJ_QUEUE_URL': a.redis}), a.redis, a.n, a.jobs)
            redis.Redis.from_url(a.redis).flushdb()
        except redis.ConnectionError as e: print(f'real Redis at {a.redis} not reachable ({e}); embedded only')
    finally: shutil.rmtree(tmp, ignore_errors=True)
    cols = list(results)
    print(f"{'no-op jobs, 2 workers':32}" + ''.join(f'{c:>12}' for c in cols) + ('  redis/embedded' if len(cols) == 2 else ''))
    for key, label in [('p50', 'round trip p50 (ms)'), ('p99', 'round trip p99 (ms)'), ('rate', 'jobs/s (submitted at once)'),
                       ('submit_rate', 'submits/s (one client)')]:
        vals = [results[c][key] for c in cols]
        print(f'{label:32}' + ''.join(f'{v:>12.1f}' for v in vals) + (f'{vals[1] / vals[0]:>16.2f}' if len(vals) == 2 else ''))
    print('goals: p50 <= 20 ms embedded; >= 500 jobs/s on Redis')


if __name__ == '__main__':
    main()
