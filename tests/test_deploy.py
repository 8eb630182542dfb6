"""The deploy recipe: deploy/Procfile run by honcho (the API; with the queue, workers, Redis and a job round trip) and
nothing left running; the Dockerfile and compose.yaml checked statically (no base image can be pulled on these machines)."""

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import psutil
import yaml
from conftest import ROOT, free_port, wait_until
from test_release_reload import PIXELS, _store_with_two_versions

DEPLOY = ROOT / 'deploy'


def _dockerfile() -> list[tuple[str, str]]:
    "(instruction, arguments) of deploy/Dockerfile, continuation lines joined."
    text = re.sub(r'\\\n', ' ', (DEPLOY / 'Dockerfile').read_text())
    return [
        (l.split(None, 1)[0].upper(), l.split(None, 1)[1] if ' ' in l.strip() else '')
        for l in (l.strip() for l in text.splitlines())
        if l and not l.startswith('#')
    ]


def test_dockerfile_pins_its_base_runs_unprivileged_with_a_health_check_and_a_data_volume():
    ins = _dockerfile()
    base = [a for i, a in ins if i == 'FROM']
    assert len(base) == 1 and re.fullmatch(r'python:\d+\.\d+\.\d+-slim[\w-]*(@sha256:[0-9a-f]{64})?', base[0]), base
    users = [a for i, a in ins if i == 'USER']
    assert users and users[-1] not in ('root', '0'), users
    assert any(i == 'HEALTHCHECK' and '/health' in a for i, a in ins)
    assert any(i == 'VOLUME' and '/data' in a for i, a in ins)
    env = ' '.join(a for i, a in ins if i == 'ENV')
    assert 'MLPROJ_PATHS_STORE=/data/store' in env  # the model store is on the volume
    cmd = [a for i, a in ins if i == 'CMD'][-1]
    assert cmd.startswith('[') and '"serve"' in cmd  # exec form: SIGTERM reaches the server, which drains and exits 0
    copied = [a.split()[0] for i, a in ins if i == 'COPY']
    for path in copied:
        assert (ROOT / path).exists(), path


def test_compose_runs_api_workers_and_redis_on_a_shared_model_volume():
    c = yaml.safe_load((DEPLOY / 'compose.yaml').read_text())
    services = c['services']
    assert 'api' in services and 'models' in c['volumes']
    for name in (n for n in ('api', 'worker') if n in services):
        s = services[name]
        assert (
            s['build']['dockerfile'] == 'deploy/Dockerfile'
            and (DEPLOY / s['build']['context'] / s['build']['dockerfile']).is_file()
        )
        assert 'models:/data' in s['volumes']
    assert services['api']['command'][:2] == ['mlproj', 'serve']
    # begin-only-with: queue
    assert set(services) >= {'api', 'worker', 'redis'}
    assert re.fullmatch(r'redis:\d+\.\d+\.\d+[\w.-]*', services['redis']['image'])  # pinned, not latest
    for name in ('api', 'worker'):
        s = services[name]
        assert s['environment']['MLPROJ_QUEUE_URL'].startswith('redis://redis:')
        assert s['depends_on']['redis']['condition'] == 'service_healthy'
    assert services['worker']['command'] == ['mlproj', 'worker']
    assert 'healthcheck' in services['redis'] and set(c['volumes']) >= {'models', 'queue'}
    # end-only-with: queue


def _web_offset() -> int:
    "honcho gives the Procfile's processes the ports base, base + 100, ...: the web process's offset."
    names = [l.split(':')[0] for l in (DEPLOY / 'Procfile').read_text().splitlines() if l and not l.startswith('#')]
    return 100 * names.index('web')


def _free_base() -> int:
    "A base port for honcho whose web process is free."
    while (port := free_port()) <= 1300:
        pass
    return port - _web_offset()


def test_procfile_runs_api_workers_and_redis_and_stops_them_all(trained, tmp_path):
    assert shutil.which('honcho', path=str(Path(sys.executable).parent)), 'honcho is in the dev extra: make install'
    _store_with_two_versions(trained, tmp_path)
    base = _free_base()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(('MLPROJ_', 'PROMETHEUS_'))},
        'PATH': f'{Path(sys.executable).parent}:{os.environ["PATH"]}',
        'MLPROJ_SETTINGS': str(ROOT / 'settings.ini'),
        'MLPROJ_TASK_NAME': 'digits',  # the fixture's models are the digits' (any project task)
        'MLPROJ_PATHS_STORE': str(tmp_path / 'store'),
        'MLPROJ_PATHS_REPORTS': str(tmp_path / 'reports'),
        'MLPROJ_QUEUE_DATA': str(tmp_path / 'q'),
        'MLPROJ_QUEUE_WORKERS': '1',
        'MLPROJ_API_TOKENS': 'ops:s3cret',
    }
    honcho = subprocess.Popen(
        [
            str(Path(sys.executable).parent / 'honcho'),
            'start',
            '-f',
            str(DEPLOY / 'Procfile'),
            '-d',
            str(ROOT),
            '-p',
            str(base),
        ],
        cwd=ROOT,
        env=env,
        stdout=(log := open(tmp_path / 'honcho.log', 'wb')),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # a file: no pipe left open by a survivor to block the end
    url, family = f'http://127.0.0.1:{base + _web_offset()}', []
    try:

        def healthy() -> bool:
            assert honcho.poll() is None, (tmp_path / 'honcho.log').read_text()
            try:
                return httpx.get(f'{url}/health').status_code == 200
            except httpx.TransportError:
                return False

        wait_until(healthy, 120, 0.3, what='the API answering /health')
        family = psutil.Process(honcho.pid).children(recursive=True)
        assert httpx.post(f'{url}/predict', json=PIXELS, timeout=30).json()['model_version'] == 1  # production
        # begin-only-with: queue
        auth = {'Authorization': 'Bearer s3cret'}
        r = httpx.post(f'{url}/jobs', json={'job': 'noop', 'parameters': {'echo': 'hi'}}, headers=auth, timeout=30)
        assert r.status_code == 202, r.text

        def finished(job_id=r.json()['id']) -> dict | None:  # noqa: B008 (binds this job's id now)
            job = httpx.get(f'{url}/jobs/{job_id}', headers=auth, timeout=30).json()
            return job if job['state'] in ('done', 'failed') else None

        job = wait_until(finished, 240, 0.3, what='the noop job finishing')
        assert job['state'] == 'done' and job['result']['echo'] == 'hi', job
        family = psutil.Process(honcho.pid).children(recursive=True)  # the workers' own processes too
        # end-only-with: queue
    finally:
        honcho.send_signal(signal.SIGINT)  # Ctrl-C: honcho stops every process
        try:
            honcho.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(honcho.pid, signal.SIGKILL)
            honcho.wait()
        log.close()
        out = (tmp_path / 'honcho.log').read_text()
    left = [p for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    for p in left:
        p.kill()
    assert not left, (left, out)
    assert len(family) >= 1, family  # the API
    assert len(family) >= 4, family  # redis, the worker supervisor and its worker, the API; only-with: queue
