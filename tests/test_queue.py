"""The job queue with real workers: on the embedded Redis, and on a real Redis when MLPROJ_TEST_REDIS_URL is set.

Workers are real processes under the real supervisor; jobs are the built-in noop or a real papermill notebook."""

import json
import os
import shutil
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import nbformat
import psutil
import pytest
import redis
from conftest import ROOT, free_port, wait_until
from nbformat.v4 import new_code_cell, new_notebook

from mlproj.queue import JobQueue
from mlproj.redis_server import EmbeddedServer, QueueUnavailable
from mlproj.settings import load_settings, to_env
from mlproj.workers import Supervisor

REDIS_URL = os.environ.get('MLPROJ_TEST_REDIS_URL')
BROKERS = [
    'embedded',
    pytest.param('redis', marks=pytest.mark.skipif(not REDIS_URL, reason='MLPROJ_TEST_REDIS_URL is not set')),
]

SLEEP_JOB = new_notebook(
    cells=[
        new_code_cell('seconds: float = 1.0\nrun_dir: str = None', metadata={'tags': ['parameters']}),
        new_code_cell(
            'import json, pathlib, time\ntime.sleep(seconds)\npathlib.Path(run_dir, "metrics.json").write_text(json.dumps({"slept": seconds}))'
        ),
    ],
    metadata={'kernelspec': {'name': 'python3', 'display_name': 'Python 3', 'language': 'python'}},
)


def make_project(tmp, **env):
    "A project of its own: the real settings.ini and a sleep job notebook, stores, reports and queue data in `tmp`."
    (tmp / 'nbs' / 'jobs').mkdir(parents=True)
    shutil.copy(ROOT / 'settings.ini', tmp / 'settings.ini')
    nbformat.write(SLEEP_JOB, tmp / 'nbs' / 'jobs' / 'sleep.ipynb')
    # fast recovery for tests: a worker silent for 2 s is dead, and every broker call looks for dead workers' jobs
    return load_settings(
        tmp / 'settings.ini',
        env={
            'MLPROJ_TASK_NAME': 'digits',  # the jobs that predict use the fixture's digits models (any project task)
            'MLPROJ_QUEUE_HEARTBEAT_TIMEOUT': '2',
            'MLPROJ_QUEUE_MAINTENANCE_CHANCE': '1000000',
            'MLPROJ_QUEUE_RETRY_BACKOFF': '0.05',
            'MLPROJ_QUEUE_MAX_BACKOFF': '0.2',
            'MLPROJ_QUEUE_RECOVER_AFTER': '1',
            'MLPROJ_QUEUE_DATA': str(tmp / 'q'),
            **env,
        },
    )


class Stack:
    "A broker (embedded or real), a JobQueue and supervised workers for one test."

    def __init__(self, kind, tmp):
        self.tmp, self.server = tmp, None
        if kind == 'embedded':
            self.settings = make_project(tmp)
            self.server = EmbeddedServer(tmp / 'q').start()
            self.url = self.server.url
        else:
            self.url = REDIS_URL
            redis.Redis.from_url(self.url).flushdb()  # db 13 is this suite's own
            self.settings = make_project(tmp, MLPROJ_QUEUE_URL=self.url)
        self.jq = JobQueue(self.settings, self.url)
        self.log = open(tmp / 'workers.log', 'wb')
        self.sup = None

    def workers(self, n=2):
        "Start n supervised workers and wait until each one polls the broker (one that is still starting takes no job)."
        since = time.time() * 1000
        self.sup = Supervisor(
            n, {**os.environ, **to_env(self.settings), 'MLPROJ_QUEUE_URL': self.url}, log=self.log, say=lambda m: None
        ).start()
        beats = f'{self.jq.broker.namespace}:__heartbeats__'
        wait_until(lambda: self.jq.r.zcount(beats, since, '+inf') >= n, timeout=120, what=f'{n} workers polling')
        return self.sup

    def worker_log(self):
        return (self.tmp / 'workers.log').read_text(errors='replace')[-3000:]

    def close(self):
        if self.sup:
            self.sup.stop()
        self.jq.close()
        if self.server:
            self.server.stop()
        else:
            redis.Redis.from_url(self.url).flushdb()
        self.log.close()


@pytest.fixture(params=BROKERS)
def stack(request, tmp_path):
    s = Stack(request.param, tmp_path)
    yield s
    s.close()


def test_job_survives_worker_kill(stack):
    sup = stack.workers(2)
    job = stack.jq.submit('sleep', {'seconds': 4.0})
    rec = wait_until(
        lambda: (r := stack.jq.get(job['id']))['state'] == 'running' and r.get('run_id') and r,
        timeout=60,
        what='job running',
    )
    first_run = stack.settings.reports_dir / 'runs' / rec['run_id']
    # the notebook is executing
    wait_until(lambda: (first_run / 'sleep.ipynb').exists(), timeout=60, what='papermill started')
    time.sleep(1)
    pid = int(rec['worker'].rsplit(':', 1)[1])
    assert pid in [p.pid for p in sup.procs]
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    done = stack.jq.wait(job['id'], timeout=120)
    print(f'SIGKILL to completion: {time.monotonic() - killed:.1f} s')
    assert done['state'] == 'done', (done, stack.worker_log())
    assert done['attempts'] == 2 and done['abandoned'] == rec['run_id'] and len(done['runs']) == 2
    states = {
        p.parent.name: json.loads(p.read_text())['state']
        for p in (stack.settings.reports_dir / 'runs').glob('*/run.json')
    }
    assert states == {rec['run_id']: 'abandoned', done['run_id']: 'done'}
    wait_until(lambda: sup.check() or all(p.poll() is None for p in sup.procs), timeout=60, what='worker restarted')
    assert all(p.poll() is None for p in sup.procs)  # the supervisor replaced the killed worker


def test_twenty_jobs_at_once_each_finish_exactly_once(stack):
    stack.workers(2)
    with ThreadPoolExecutor(8) as ex:
        jobs = list(ex.map(lambda i: stack.jq.submit('noop', {'echo': str(i), 'sleep': 0.05}), range(20)))
    done = [stack.jq.wait(j['id'], timeout=60) for j in jobs]
    assert [d['state'] for d in done] == ['done'] * 20
    assert [d['attempts'] for d in done] == [1] * 20  # each ran once: no second delivery, no second worker
    assert sorted(int(d['result']['echo']) for d in done) == list(range(20))
    assert len({d['worker'] for d in done}) == 2  # both workers took jobs (an idle worker looks again within 100 ms)


def test_failing_job_is_retried_then_failed_with_its_notebook(stack):
    stack.workers(1)
    flaky = stack.jq.submit('noop', {'fail_attempts': 1})
    broken = stack.jq.submit('sleep', {'seconds': -1.0})  # time.sleep raises ValueError in the notebook
    assert stack.jq.wait(flaky['id'], timeout=60)['state'] == 'done'
    assert stack.jq.get(flaky['id'])['attempts'] == 2
    rec = stack.jq.wait(broken['id'], timeout=120)
    assert rec['state'] == 'failed' and rec['attempts'] == stack.settings.queue.retries + 1 == len(rec['runs'])
    assert 'ValueError' in rec['error'] and 'sleep.ipynb' in rec['error']
    nb = nbformat.read(stack.settings.reports_dir / 'runs' / rec['run_id'] / 'sleep.ipynb', as_version=4)
    assert any(o.get('ename') == 'ValueError' for c in nb.cells for o in c.get('outputs', []))


def test_cancelled_job_never_runs_and_bad_parameters_are_refused(stack):
    job = stack.jq.submit('noop', {'echo': 'never'})
    assert stack.jq.cancel(job['id'])['state'] == 'cancelled'
    with pytest.raises(ValueError, match="no parameter 'secs'"):
        stack.jq.submit('sleep', {'secs': 1})
    with pytest.raises(ValueError, match='is not a float'):
        stack.jq.submit('sleep', {'seconds': 'long'})
    with pytest.raises(ValueError, match='unknown job'):
        stack.jq.submit('nope', {})
    stack.workers(1)
    after = stack.jq.submit('noop', {})
    assert stack.jq.wait(after['id'], timeout=60)['state'] == 'done'
    rec = stack.jq.get(job['id'])
    assert rec['state'] == 'cancelled' and rec['attempts'] == 0
    assert len(stack.jq.jobs()) == 2  # the refused ones were never queued


def test_out_of_range_parameters_are_refused_everywhere_and_a_job_failing_on_them_runs_once(stack):
    from fastapi.testclient import TestClient

    from deploy.app import create_app
    from mlproj.jobs import ParameterError

    shutil.copy(
        ROOT / 'nbs' / 'jobs' / 'train.ipynb', stack.tmp / 'nbs' / 'jobs'
    )  # nothing trains here: every check comes first
    for params, says in [
        ({'max_epochs': -1}, 'parameter max_epochs: -1 is not at least 1'),
        ({'lr': -5}, 'parameter lr: -5 is not above 0'),
        ({'wandb_mode': 'offlin'}, "parameter wandb_mode: 'offlin' is not one of offline, online, disabled"),
    ]:
        with pytest.raises(ParameterError) as e:
            stack.jq.submit('train', params)
        assert str(e.value) == says
    with pytest.raises(ParameterError, match='-p max_epochs: 0 is not at least 1'):
        stack.jq.submit_sweep('train', {'max_epochs': ['2', '0']})
    with TestClient(create_app(stack.settings)) as client:
        client.app.state.tokens = {'t': 'ci'}
        r = client.post('/jobs', json={'job': 'train', 'parameters': {'lr': -5}}, headers={'Authorization': 'Bearer t'})
    assert r.status_code == 422 and r.json()['detail'] == 'parameter lr: -5 is not above 0'
    env = {**os.environ, **to_env(stack.settings), 'MLPROJ_PATHS_STORE': str(stack.tmp / 'store')}
    cli = subprocess.run(
        [str(ROOT / '.venv/bin/mlproj'), 'train', '--quiet', '-p', 'max_epochs', '-1'],
        cwd=stack.tmp,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cli.returncode == 1 and cli.stderr == 'mlproj: error: -p max_epochs: -1 is not at least 1\n', cli.stderr
    assert (
        stack.jq.jobs() == [] and not (stack.settings.reports_dir / 'runs').exists()
    )  # nothing queued, no kernel started
    job = stack.jq.submit('train', {'max_epochs': 1})
    stack.jq.r.hset(
        stack.jq.key(job['id']), 'parameters', json.dumps({'max_epochs': -1})
    )  # a record that fails its checks later
    stack.workers(1)
    rec = stack.jq.wait(job['id'], timeout=60)
    assert (rec['state'], rec['attempts'], rec['failures']) == ('failed', 1, 1) and 'is not at least 1' in rec[
        'error'
    ], rec
    assert not (stack.settings.reports_dir / 'runs').exists()


def test_queued_jobs_survive_a_restart_of_the_server(tmp_path):
    s = Stack('embedded', tmp_path)
    try:
        jobs = [s.jq.submit('noop', {'echo': str(i)}) for i in range(5)]
        s.jq.close()
        s.server.stop()
        with pytest.raises(QueueUnavailable):
            JobQueue(s.settings)
        s.server = EmbeddedServer(tmp_path / 'q').start()
        s.jq = JobQueue(s.settings)
        assert [s.jq.get(j['id'])['state'] for j in jobs] == ['queued'] * 5
        s.workers(1)
        assert all(s.jq.wait(j['id'], timeout=60)['state'] == 'done' for j in jobs)
    finally:
        s.close()


def test_a_job_whose_broker_message_is_gone_is_sent_again(stack):
    jobs = [stack.jq.submit('noop', {'echo': str(i)}) for i in range(3)]
    r = redis.Redis.from_url(stack.url)
    r.delete(
        *r.keys('mlproj-dramatiq:*')
    )  # the broker lost its messages (a Redis restarted without its data); the records stayed
    time.sleep(1.2)  # older than [queue] recover_after (1 s here): a submit in flight is not mistaken for a lost one
    stack.workers(1)  # a worker looks for lost jobs when it starts, then every minute
    done = [stack.jq.wait(j['id'], timeout=60) for j in jobs]
    assert [(d['state'], d['attempts'], d['requeued']) for d in done] == [('done', 1, 1)] * 3, stack.worker_log()
    assert stack.jq.recover(grace=0) == []  # nothing left to send
    assert sorted(d['result']['echo'] for d in done) == ['0', '1', '2']


def test_restarting_the_api_and_the_workers_loses_no_queued_job(stack):
    from fastapi.testclient import TestClient

    from deploy.app import create_app

    auth = {'Authorization': 'Bearer t'}

    def api():
        c = TestClient(create_app(stack.settings)).__enter__()
        c.app.state.tokens = {'t': 'ci'}
        return c

    client = api()
    sup = stack.workers(1)
    long = client.post('/jobs', json={'job': 'sleep', 'parameters': {'seconds': 30.0}}, headers=auth).json()
    wait_until(
        lambda: (
            (r := stack.jq.get(long['id']))['state'] == 'running'
            and r.get('run_id')
            and (stack.settings.reports_dir / 'runs' / r['run_id'] / 'sleep.ipynb').exists()
        ),
        timeout=60,
        what='long job running',
    )
    queued = [
        client.post('/jobs', json={'job': 'noop', 'parameters': {'echo': str(i)}}, headers=auth).json()
        for i in range(4)
    ]
    assert {j['state'] for j in queued} == {'queued'}
    client.__exit__(None, None, None)  # the API stops ...
    sup.stop()  # ... and so does the worker, mid-job (SIGTERM)
    first = stack.jq.get(long['id'])
    assert first['state'] == 'queued' and 'stopped' in first['error']
    client = api()  # both start again
    try:
        stack.workers(2)
        stack.jq.r.hset(
            stack.jq.key(long['id']), 'parameters', json.dumps({'seconds': 0.5})
        )  # no need to wait 30 s again
        done = [
            wait_until(
                lambda: (j := client.get(f'/jobs/{q["id"]}', headers=auth).json())['state'] in ('done', 'failed') and j,
                timeout=120,
                what=f'job {q["id"]} finished',
            )
            for q in [long, *queued]
        ]
    finally:
        client.__exit__(None, None, None)
    assert [d['state'] for d in done] == ['done'] * 5, stack.worker_log()
    assert [d['attempts'] for d in done] == [2, 1, 1, 1, 1]
    runs = {
        p.parent.name: json.loads(p.read_text())['state']
        for p in (stack.settings.reports_dir / 'runs').glob('*/run.json')
    }
    assert runs == {first['run_id']: 'interrupted', done[0]['run_id']: 'done'}


@pytest.mark.full
def test_training_sweep_runs_on_the_workers_and_reports_the_best_on_validation(tmp_path):
    s = Stack('embedded', tmp_path)
    try:
        shutil.copy(ROOT / 'nbs' / 'jobs' / 'train.ipynb', tmp_path / 'nbs' / 'jobs')
        from mlproj.data import benchmark_version

        benchmark_version(s.settings)  # built once, before the runs that would each build it
        grid = {
            'lr': ['0.001', '0.01'],
            'max_epochs': ['1', '2'],
            'limit_train_batches': ['4'],
            'wandb_mode': ['disabled'],
        }
        sweep, jobs = s.jq.submit_sweep('train', grid)
        assert len(jobs) == 4 and {j['sweep'] for j in jobs} == {sweep}
        s.workers(2)
        done = [s.jq.wait(j['id'], timeout=900) for j in jobs]
        assert [d['state'] for d in done] == ['done'] * 4, s.worker_log()
        assert len({d['worker'] for d in done}) == 2  # run in parallel, on both workers
        out = s.settings.reports_dir / 'sweeps' / sweep
        # the last job to finish writes it
        wait_until(lambda: (out / 'index.html').exists(), timeout=60, what='sweep report')
        report = json.loads((out / 'sweep.json').read_text())
        val = {d['id']: d['result']['metrics']['val_acc'] for d in done}
        assert report['best'] == max(val, key=val.get)  # on validation accuracy, the only figure a sweep may choose by
        assert {r['job']: r['val_acc'] for r in report['runs']} == val
        assert sorted((r['lr'], r['max_epochs']) for r in report['runs']) == [
            (0.001, 1),
            (0.001, 2),
            (0.01, 1),
            (0.01, 2),
        ]
        page = (out / 'index.html').read_text()
        assert 'val_acc.svg' in page and page.count('<tr') == 5 and 'best' in page
        assert (out / 'val_acc.svg').read_text().count('<rect') == 4
        for d in done:
            assert (s.settings.reports_dir / 'runs' / d['run_id'] / 'train.html').is_file()
    finally:
        s.close()


def test_up_runs_the_stack_and_stops_with_nothing_left_behind(tmp_path):
    settings = make_project(tmp_path)
    port = free_port()
    env = {
        **os.environ,
        **to_env(settings),
        'MLPROJ_API_TOKENS': 'ci:s3cret',
        'MLPROJ_PATHS_STORE': str(tmp_path / 'store'),
    }
    log = open(tmp_path / 'up.log', 'wb')
    up = subprocess.Popen(
        [str(ROOT / '.venv/bin/mlproj'), 'up', '--workers', '2', '--port', str(port)],
        env=env,
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url, tree = f'http://127.0.0.1:{port}', set()
    try:

        def ready():
            tree.update(p.pid for p in psutil.Process(up.pid).children(recursive=True))
            assert up.poll() is None, (tmp_path / 'up.log').read_text()
            try:
                return httpx.get(f'{url}/health', timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(ready, timeout=90, what='API up')
        assert httpx.post(f'{url}/jobs', json={'job': 'noop'}).status_code == 401
        assert (
            httpx.post(f'{url}/jobs', json={'job': 'noop'}, headers={'Authorization': 'Bearer wrong'}).status_code
            == 403
        )
        auth = {'Authorization': 'Bearer s3cret'}
        r = httpx.post(f'{url}/jobs', json={'job': 'noop', 'parameters': {'echo': 'hello'}}, headers=auth)
        assert r.status_code == 202 and r.headers['location'] == f'/jobs/{r.json()["id"]}'
        job = wait_until(
            lambda: (j := httpx.get(url + r.headers['location'], headers=auth).json())['state'] == 'done' and j,
            timeout=60,
            what='job done',
        )
        assert job['result']['echo'] == 'hello' and job['attempts'] == 1
        bad = httpx.post(f'{url}/jobs', json={'job': 'noop', 'parameters': {'sleep': 'x'}}, headers=auth)
        assert bad.status_code == 422 and 'is not a float' in bad.text
        assert httpx.post(f'{url}/jobs', json={'job': 'noop', 'rerun': 'x'}, headers=auth).status_code == 422
        listed = httpx.get(f'{url}/jobs', params={'state': 'done', 'kind': 'noop'}, headers=auth).json()
        assert [j['id'] for j in listed] == [job['id']]
        assert httpx.get(f'{url}/jobs', params={'state': 'finished'}, headers=auth).status_code == 422
        assert httpx.get(f'{url}/jobs/nope', headers=auth).status_code == 404
        tree.update(p.pid for p in psutil.Process(up.pid).children(recursive=True))
        assert len(tree) >= 4  # the Redis server, 2 workers, the API
    finally:
        up.send_signal(signal.SIGTERM)
        up.wait(60)
        log.close()
    assert up.returncode == 0, (tmp_path / 'up.log').read_text()
    left = [p for p in tree if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert left == [], [psutil.Process(p).cmdline() for p in left]
    assert not (tmp_path / 'q' / 'server.json').exists()


def test_job_endpoints_are_off_without_a_token(tmp_path, monkeypatch):
    from fastapi.testclient import TestClient

    from deploy.app import create_app

    monkeypatch.delenv('MLPROJ_API_TOKENS', raising=False)
    with TestClient(create_app(make_project(tmp_path))) as client:
        for r in (client.post('/jobs', json={'job': 'noop'}), client.get('/jobs'), client.delete('/jobs/x')):
            assert r.status_code == 503 and 'MLPROJ_API_TOKENS' in r.json()['detail']
        client.app.state.tokens = {'t': 'ci'}
        r = client.get('/jobs', headers={'Authorization': 'Bearer t'})  # a token, but no queue server running
        assert r.status_code == 503 and 'mlproj up' in r.json()['detail']
