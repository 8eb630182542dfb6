"""One owner for the embedded queue server: each process of `mlproj up` killed in turn, and no job lost.

Every process is real: `mlproj up` (embedded Redis and supervised workers), the redis-server it starts, its workers."""

import json
import os
import signal
import subprocess
import time

import psutil
import pytest
from conftest import ROOT, free_port, wait_until
from test_queue import make_project

from mlproj.queue import JobQueue
from mlproj.redis_server import EmbeddedServer
from mlproj.settings import to_env


class Up:
    "`mlproj up --no-api` in the test's project, its output in a log file."

    def __init__(self, tmp, settings, name='up', workers=1, port=None):
        self.tmp, self.log_path = tmp, tmp / f'{name}.log'
        self.log = open(self.log_path, 'wb')
        self.env = {**os.environ, **to_env(settings), 'MLPROJ_PATHS_STORE': str(tmp / 'store')}
        api = ['--port', str(port)] if port else ['--no-api']
        self.proc = subprocess.Popen(
            [str(ROOT / '.venv/bin/mlproj'), 'up', *api, '--workers', str(workers)],
            env=self.env,
            cwd=tmp,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def text(self):
        return self.log_path.read_text(errors='replace')

    def ready(self):
        "Wait until it serves (its signal handlers set); the PID of its redis-server."
        wait_until(
            lambda: 'Ctrl-C stops them all' in self.text() or self.proc.poll() is not None, timeout=90, what='up ready'
        )
        assert self.proc.poll() is None, self.text()
        return server_pid(self.tmp)

    def children(self, marker):
        return [p for p in psutil.Process(self.proc.pid).children() if marker in ' '.join(p.cmdline())]

    def workers(self):
        return self.children('worker_main')

    def stop(self, signal_it=True):
        "SIGTERM it (unless it is to exit by itself); its exit status."
        if signal_it and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(90)
        self.log.close()
        return self.proc.returncode


def servers(tmp) -> list[int]:
    "PIDs of the redis-servers running on the project's folder."
    sock = str(tmp / 'q' / 'redis.sock')
    out = []
    for p in psutil.process_iter():
        try:
            cmd = ' '.join(p.cmdline())
            if 'redis-server' in cmd and sock in cmd and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p.pid)
        except psutil.Error:
            pass
    return out


def server_pid(tmp):
    try:
        return json.loads((tmp / 'q' / 'server.json').read_text())['pid']
    except (OSError, ValueError):
        return None


def cli(tmp, env, *args):
    return subprocess.run(
        [str(ROOT / '.venv/bin/mlproj'), *args], env=env, cwd=tmp, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def project(tmp_path):
    settings = make_project(tmp_path)
    yield settings
    for pid in servers(tmp_path):
        os.kill(pid, signal.SIGKILL)  # whatever a failed test left


def test_a_second_up_is_refused_while_one_runs(project, tmp_path):
    first = Up(tmp_path, project)
    try:
        pid = first.ready()
        second = Up(tmp_path, project, 'second')
        assert second.stop(signal_it=False) == 1 and f'belongs to process {first.proc.pid}' in second.text(), (
            second.text()
        )
        assert first.proc.poll() is None and servers(tmp_path) == [pid] == [server_pid(tmp_path)]  # untouched
    finally:
        assert first.stop() == 0, first.text()
    assert (
        servers(tmp_path) == []
        and not (tmp_path / 'q' / 'server.json').exists()
        and not (tmp_path / 'q' / 'owner.json').exists()
    )


def test_sigkill_of_up_leaves_a_server_that_the_next_up_stops_and_no_job_is_lost(project, tmp_path):
    first = Up(tmp_path, project, port=free_port())
    old = first.ready()
    api, workers = first.children('deploy.serve')[0], first.workers()
    jq = JobQueue(project)
    long = jq.submit('noop', {'sleep': 4.0, 'echo': 'long'})
    quick = [jq.submit('noop', {'echo': str(i)}) for i in range(3)]
    wait_until(lambda: jq.get(long['id'])['state'] == 'running', what='long job running', timeout=60)
    time.sleep(1.5)  # the append-only file is written every second
    first.proc.kill()
    first.stop(signal_it=False)
    wait_until(
        lambda: not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in [api, *workers]),
        what='the API and the workers gone with their parent',
        timeout=60,
    )
    assert servers(tmp_path) == [old]  # the orphan: its owner is gone, the server runs on
    second = Up(tmp_path, project, 'second')
    try:
        new = wait_until(lambda: (p := server_pid(tmp_path)) != old and p, what='second up serving', timeout=60)
        assert (
            servers(tmp_path) == [new] and 'outlived its owner' in second.text()
        )  # the orphan was stopped, not doubled
        done = [jq.wait(j['id'], timeout=90) for j in (long, *quick)]
        assert [d['state'] for d in done] == ['done'] * 4, second.text()
        assert [d['result']['echo'] for d in done] == ['long', '0', '1', '2'] and done[0]['attempts'] == 2
        listed = cli(tmp_path, second.env, 'jobs', '--state', 'done')
        assert listed.returncode == 0 and listed.stdout.count(' done ') == 4, listed
    finally:
        jq.close()
        assert second.stop() == 0, second.text()
    assert servers(tmp_path) == []


def test_up_restarts_a_killed_redis_and_worker_and_no_job_is_lost(project, tmp_path):
    up = Up(tmp_path, project)
    try:
        old = up.ready()
        jq = JobQueue(project)
        first = [jq.submit('noop', {'sleep': 0.5, 'echo': str(i)}) for i in range(4)]
        time.sleep(1.5)  # the append-only file is written every second
        os.kill(old, signal.SIGKILL)
        new = wait_until(lambda: (p := server_pid(tmp_path)) != old and p, what='redis started again', timeout=60)
        assert servers(tmp_path) == [new] and 'starting it again' in up.text()
        worker = wait_until(lambda: up.workers(), what='a worker', timeout=60)[0]
        worker.kill()  # and a worker: the supervisor starts another
        later = jq.submit('noop', {'echo': 'later'})
        done = [jq.wait(j['id'], timeout=90) for j in (*first, later)]
        assert [d['state'] for d in done] == ['done'] * 5, up.text()
        assert [d['result']['echo'] for d in done] == ['0', '1', '2', '3', 'later']
        assert up.proc.poll() is None and worker.pid not in [w.pid for w in up.workers()]
        jq.close()
    finally:
        assert up.stop() == 0, up.text()
    assert servers(tmp_path) == [] and not (tmp_path / 'q' / 'server.json').exists()


def test_workers_stop_with_a_clear_error_when_their_redis_is_gone(project, tmp_path):
    server = EmbeddedServer(tmp_path / 'q').start()
    env = {**os.environ, **to_env(project), 'MLPROJ_QUEUE_URL': server.url}
    worker = subprocess.Popen(
        [str(ROOT / '.venv/bin/mlproj'), 'worker', '--workers', '1'],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        jq = JobQueue(project, server.url)
        assert jq.wait(jq.submit('noop', {})['id'], timeout=60)['state'] == 'done'
        jq.close()
        server.proc.kill()
        server.stop()
        out, err = worker.communicate(timeout=90)  # 6 x heartbeat_timeout (2 s here) without an answer, then it stops
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert worker.returncode == 1 and 'cannot reach the queue server' in err, err[-2000:]


@pytest.mark.full
def test_an_up_still_stopping_hands_over_to_the_next_and_jobs_tells_the_truth(project, tmp_path):
    first = Up(tmp_path, project)
    first.ready()
    worker = wait_until(lambda: first.workers(), what='a worker', timeout=60)[0]
    worker.suspend()  # a worker that does not answer SIGTERM: `up` waits 30 s for it before it kills it
    first.proc.send_signal(signal.SIGTERM)
    wait_until(
        lambda: json.loads((tmp_path / 'q' / 'owner.json').read_text())['state'] == 'stopping',
        what='first up stopping',
        timeout=60,
    )
    second = Up(tmp_path, project, 'second')
    try:
        assert first.stop(signal_it=False) == 0, first.text()
        new = wait_until(
            lambda: (p := server_pid(tmp_path)) and psutil.pid_exists(p) and p, timeout=60, what='second up serving'
        )
        assert 'finish stopping' in second.text() and servers(tmp_path) == [new]
        time.sleep(1)  # the first up has exited: nothing of it may remove the second's state now
        assert server_pid(tmp_path) == new
        r = cli(tmp_path, second.env, 'submit', 'noop', '--wait')
        assert r.returncode == 0 and ' done ' in r.stdout, r
        assert cli(tmp_path, second.env, 'jobs').stdout.count(' done ') == 1
    finally:
        assert second.stop() == 0, second.text()
    assert servers(tmp_path) == [] and not (tmp_path / 'q' / 'server.json').exists()
