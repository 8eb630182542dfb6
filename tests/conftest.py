"""Shared fixtures: a project settings object pointing at temporary stores, a real trained, registered model, and
servers started in their own processes."""

import os
import re
import signal
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest

from mlproj.console import free_port, wait_until
from mlproj.settings import load_settings

ROOT = Path(__file__).resolve().parents[1]


def make_settings(tmp: Path, **env):
    "The project's settings.ini with the store and reports moved into `tmp` (and any MLPROJ_* overrides)."
    return load_settings(
        ROOT / 'settings.ini',
        # the tests are the digits task's unless they name another (a project generated with another task runs them too)
        env={
            'MLPROJ_TASK_NAME': 'digits',
            'MLPROJ_PATHS_STORE': str(tmp / 'store'),
            'MLPROJ_PATHS_REPORTS': str(tmp / 'reports'),
            **env,
        },
    )


# a short training run is measured on a small service-like set and held to a lowered service-like bar (the real one is in settings.ini)
SHORT_RUN_SERVICE_LIKE = dict(
    MLPROJ_PROBLEM_SERVICE_LIKE_PER_CLASS='6',
    MLPROJ_PROBLEM_MIN_SERVICE_LIKE_ACCURACY='0.5',
    MLPROJ_PROBLEM_MAX_SERVICE_LIKE_GAP='0.5',
)


@pytest.fixture
def settings(tmp_path):
    return make_settings(tmp_path)


@pytest.fixture(scope='session')
def trained(tmp_path_factory):
    """A model trained for real on the benchmark (a short run), evaluated and registered as version 1.

    Returns (settings, train_dir, evaluation)."""
    from mlproj.data import benchmark_version
    from mlproj.evaluate import evaluate_run
    from mlproj.registry import open_registry
    from mlproj.servicelike import service_like_version
    from mlproj.train import config_from_settings, train

    tmp = tmp_path_factory.mktemp('trained')
    s = make_settings(tmp, **SHORT_RUN_SERVICE_LIKE)
    vid = benchmark_version(s)
    run_dir = tmp / 'reports' / 'runs' / 'train-fixture'
    train(config_from_settings(s, vid, run_dir, max_epochs=10, wandb_mode='disabled', progress=False))
    ev = evaluate_run(run_dir, vid, s.store_url, s.problem, service_like_version=service_like_version(s))
    open_registry(s).register(
        run_dir,
        ev,
        train_run='train-fixture',
        eval_run='eval-fixture',
        code_version={'commit': None, 'dirty': None},
        parameters={'max_epochs': 10},
        service_like={k: ev['service_like'][k] for k in ('n', 'accuracy')},  # as release.register_evaluated records it
    )
    return s, run_dir, ev


@pytest.fixture(scope='module')
def browser():
    """A headless Debian Chromium driven by Playwright (never a downloaded browser); skips, saying how to get one.

    Per module, not per session: Playwright's sync API keeps an asyncio loop running in this thread while it is
    open, and tests of other modules that run their own loop (anyio.run, asyncio.run) would fail beside it."""
    import shutil

    exe = shutil.which('chromium') or shutil.which('chromium-browser')
    if not exe:
        pytest.skip('no chromium on PATH: `apt-get install chromium` (Debian) to run the browser tests')
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=exe,
            args=[
                '--headless',
                '--no-sandbox',
                '--disable-gpu',
                '--disable-background-networking',
                '--disable-component-update',
                '--no-first-run',
            ],
        )
        yield b
        b.close()


class S3Server:
    "A moto S3 server running in its own process on 127.0.0.1, with fake credentials."

    def __init__(self, port: int):
        self.endpoint_url = f'http://127.0.0.1:{port}'
        # what boto3/s3fs (and a `mlproj` subprocess) need to reach it: pass as env=, or monkeypatch.setenv each
        self.env = {
            'AWS_ENDPOINT_URL': self.endpoint_url,
            'AWS_ACCESS_KEY_ID': 'testing',
            'AWS_SECRET_ACCESS_KEY': 'testing',
            'AWS_DEFAULT_REGION': 'us-east-1',
        }
        # the same for an explicit fsspec/s3fs filesystem: fsspec.filesystem('s3', **storage_options)
        self.storage_options = dict(key='testing', secret='testing', client_kwargs={'endpoint_url': self.endpoint_url})
        self.bucket = 'mlproj-test'


@pytest.fixture(scope='session')
def s3_server():
    """A real S3-compatible HTTP server (moto's, with conditional writes made atomic as on S3: tests/moto_atomic.py;
    a separate process on a free port of 127.0.0.1)
    with the bucket `mlproj-test` created; stopped at the end of the session."""
    import urllib.request

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / 'tests' / 'moto_atomic.py'), '127.0.0.1', str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    srv = S3Server(port)
    try:

        def answers() -> bool:
            try:
                urllib.request.urlopen(srv.endpoint_url + '/moto-api/', timeout=2).read()
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError(f'moto.server exited with code {proc.returncode}')
                return False
            return True

        wait_until(answers, 60, 0.2, what='moto.server answering')
        req = urllib.request.Request(f'{srv.endpoint_url}/{srv.bucket}', method='PUT')  # create the bucket
        urllib.request.urlopen(req, timeout=10).read()
        yield srv
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def s3_store_url(s3_server, monkeypatch):
    """`s3://mlproj-test/<fresh prefix>` on the session's moto server, with AWS_* set in this process's environment
    so that `Store(url)` reaches it through s3fs (`s3_server.env` gives the same to a subprocess)."""
    import uuid

    for k, v in s3_server.env.items():
        monkeypatch.setenv(k, v)
    return f's3://{s3_server.bucket}/{uuid.uuid4().hex[:12]}'


class ServerProcess:
    """A server started as its own process group, with its log (stdout and stderr) in a file.

    Its own group, so that stopping it stops every process it started (uvicorn's workers, a kernel) and nothing is
    left holding its output; a file rather than a pipe, so that nothing has to drain it and no reader can block the
    test's end. Use as a context manager: whatever is still running at the end is killed."""

    def __init__(
        self, argv: list, env: dict, cwd=ROOT, url: str | None = None, ready: str = '/ready', timeout: float = 120
    ):
        self._file = tempfile.NamedTemporaryFile(prefix='mlproj-server-', suffix='.log')
        self.proc = subprocess.Popen(
            [str(a) for a in argv],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pid, self.url = self.proc.pid, url
        try:
            self._wait_ready(ready, timeout)
        except BaseException:
            self.kill()
            raise

    def _wait_ready(self, ready, timeout):
        import httpx

        def answers() -> bool:
            assert self.proc.poll() is None, f'the server exited with {self.proc.returncode}:\n{self.log}'
            if self.url is None and (m := re.search(r'Uvicorn running on (http://127\.0\.0\.1:\d+)', self.log)):
                self.url = m[1]
            try:
                return bool(self.url) and httpx.get(self.url + ready, timeout=5).status_code == 200
            except httpx.TransportError:
                return False

        try:
            wait_until(answers, timeout, 0.1, what=f'the server answering {ready}')
        except TimeoutError as e:
            raise AssertionError(f'{e}:\n{self.log}') from None

    @property
    def log(self) -> str:
        "Everything it has written so far (kept once it has been stopped)."
        if self._file.closed:
            return self._final
        with open(self._file.name, errors='replace') as f:
            return f.read()

    @property
    def lines(self) -> list[str]:
        return self.log.splitlines(keepends=True)

    @property
    def port(self) -> int:
        return int(self.url.rsplit(':', 1)[1])

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, sig=signal.SIGTERM, timeout: float = 30) -> int:
        "Send `sig` to the leader and wait for it: its exit code (what it left running is killed)."
        if self.proc.poll() is None:
            self.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self.kill()

    def kill(self):
        "SIGKILL to the whole group (the leader and every process it started), then reap the leader."
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()
        self._final = self.log
        self._file.close()


def serving_env(store, reports, **env) -> dict:
    "The environment of a server process on `store` and `reports`: settings.ini, no MLPROJ_* or PROMETHEUS_* from outside, `env` on top."
    base = {k: v for k, v in os.environ.items() if not k.startswith(('MLPROJ_', 'PROMETHEUS_'))}
    return {
        **base,
        'MLPROJ_SETTINGS': str(ROOT / 'settings.ini'),
        'MLPROJ_PATHS_STORE': str(store),
        'MLPROJ_PATHS_REPORTS': str(reports),
        'MLPROJ_TASK_NAME': 'digits',  # the digits task's server unless `env` names another
        **env,
    }


def uvicorn_argv(*extra) -> list:
    "`uvicorn deploy.app:app_from_env --factory` on a free port of 127.0.0.1 that it reports in its log."
    return [
        sys.executable,
        '-m',
        'uvicorn',
        'deploy.app:app_from_env',
        '--factory',
        '--host',
        '127.0.0.1',
        '--port',
        '0',
        '--no-access-log',
        *extra,
    ]


@contextmanager
def uvicorn_server(env):
    "uvicorn serving `env`'s store on a free port: yields the ServerProcess; stopped with SIGTERM and checked at the end."
    with ServerProcess(uvicorn_argv(), env) as srv:
        yield srv
        code = srv.stop()
    # uvicorn re-raises the SIGTERM it handled once it has shut down gracefully
    assert code in (0, -signal.SIGTERM) and 'Application shutdown complete' in srv.log, srv.log
