"""What every benchmark shares: a workspace with a trained, registered model, servers in their own processes, load from wrk."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from mlproj.console import free_port, wait_until  # noqa: F401 (the benches import free_port from here)

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
SECONDS = float(os.environ.get('BENCH_SECONDS', '3'))  # length of each load run
ROUNDS = int(
    os.environ.get('BENCH_ROUNDS', '3')
)  # interleaved rounds of the serving figures; ratios are medians over rounds


def settings_for(work: Path, **env):
    "The project's settings with the store and reports moved into `work`."
    from mlproj.settings import load_settings

    return load_settings(
        ROOT / 'settings.ini',
        env={'MLPROJ_PATHS_STORE': str(work / 'store'), 'MLPROJ_PATHS_REPORTS': str(work / 'reports'), **env},
    )


def register(settings, run_dir: Path) -> int:
    "Evaluate a training run and register it (whatever acceptance says): the model the servers load."
    from mlproj.evaluate import evaluate_run
    from mlproj.registry import Registry
    from mlproj.store import Store

    vid = json.loads((run_dir / 'metrics.json').read_text())['dataset_version']
    ev = evaluate_run(run_dir, vid, settings.store_url, settings.problem)
    return Registry(Store(settings.store_url)).register(
        run_dir,
        ev,
        train_run=run_dir.name,
        eval_run='bench',
        code_version={'commit': None, 'dirty': None},
        parameters={},
    )


class Server:
    "A server in its own process on loopback, stopped (by its pid) on exit."

    def __init__(
        self,
        argv: list[str],
        port: int,
        env: dict | None = None,
        ready: str = '/health',
        timeout: float = 120,
        log: Path | None = None,
    ):
        self.argv, self.port, self.env, self.ready, self.timeout, self.log = argv, port, env, ready, timeout, log

    def __enter__(self):
        import httpx

        out = open(self.log, 'wb') if self.log else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            self.argv,
            cwd=ROOT,
            env={**os.environ, **(self.env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

        def answers():
            if self.proc.poll() is not None:
                raise RuntimeError(f'server {self.argv} exited with {self.proc.returncode}')
            try:
                return httpx.get(f'{self.url}{self.ready}', timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        try:
            wait_until(answers, self.timeout, 0.3, what=f'server {self.argv} answering {self.ready}')
        except TimeoutError:
            self.__exit__()
            raise RuntimeError(f'server {self.argv} did not answer {self.ready} within {self.timeout} s') from None
        return self

    @property
    def url(self) -> str:
        return f'http://127.0.0.1:{self.port}'

    def __exit__(self, *exc):
        import signal

        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # its own session: the workers uvicorn started go too
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of process `pid` and every process it started (uvicorn's workers), from /proc.

    Steadier than requests a second on 2 shared cores: other work slows a server down but adds little to the CPU time
    it spends on each request."""
    total, todo, tick = 0.0, [pid], os.sysconf('SC_CLK_TCK')
    while todo:
        p = todo.pop()
        try:
            with open(f'/proc/{p}/stat') as f:
                fields = f.read().rsplit(')', 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in os.listdir(f'/proc/{p}/task'):
                with open(f'/proc/{p}/task/{task}/children') as f:
                    todo += [int(c) for c in f.read().split()]
        except (FileNotFoundError, ProcessLookupError):
            pass  # it ended meanwhile
    return total


def uvicorn_argv(app: str, port: int, workers: int = 1) -> list[str]:
    """uvicorn as `mlproj serve` runs it (uvloop; httptools behind the request-head deadline of deploy/protocol.py, or
    plain httptools in a tree that predates it), on `app` (a factory)."""
    http = 'deploy.protocol:HeaderTimeout' if (ROOT / 'deploy' / 'protocol.py').exists() else 'httptools'
    return [
        sys.executable,
        '-m',
        'uvicorn',
        app,
        '--factory',
        '--app-dir',
        str(BENCH),
        '--host',
        '127.0.0.1',
        '--port',
        str(port),
        '--workers',
        str(workers),
        '--loop',
        'uvloop',
        '--http',
        http,
        '--no-access-log',
        '--log-level',
        'warning',
    ]


_LUA = """local f = io.open(os.getenv("BENCH_BODY"), "rb")
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = os.getenv("BENCH_CTYPE")
if os.getenv("BENCH_ACCEPT") ~= "" then wrk.headers["Accept"] = os.getenv("BENCH_ACCEPT") end
"""


def load(
    url: str,
    body: bytes,
    content_type: str,
    connections: int,
    seconds: float = SECONDS,
    work: Path | None = None,
    accept: str = '',
) -> dict:
    "Requests per second from a second process (wrk, else an async httpx client) POSTing `body` (and `accept`, if any); refuses any non-2xx."
    import tempfile

    work = Path(work or tempfile.mkdtemp())
    (work / 'body.bin').write_bytes(body)
    if shutil.which('wrk'):
        (work / 'post.lua').write_text(_LUA)
        env = {**os.environ, 'BENCH_BODY': str(work / 'body.bin'), 'BENCH_CTYPE': content_type, 'BENCH_ACCEPT': accept}
        out = subprocess.run(
            [
                'wrk',
                '-t1',
                f'-c{connections}',
                f'-d{seconds:g}s',
                '--timeout',
                '10s',
                '-s',
                str(work / 'post.lua'),
                url,
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=seconds + 60,
        )
        if out.returncode:
            raise RuntimeError(f'wrk failed: {out.stderr}')
        bad = re.search(r'Non-2xx or 3xx responses: (\d+)', out.stdout)
        errors = re.search(r'Socket errors: (.*)', out.stdout)
        if bad:
            raise RuntimeError(f'{url} answered {bad.group(1)} requests with an error status:\n{out.stdout}')
        rps = float(re.search(r'Requests/sec:\s+([\d.]+)', out.stdout).group(1))
        return dict(
            rps=rps, tool='wrk', connections=connections, seconds=seconds, socket_errors=errors and errors.group(1)
        )
    out = subprocess.run(
        [
            sys.executable,
            str(BENCH / 'httpload.py'),
            url,
            str(work / 'body.bin'),
            content_type,
            str(connections),
            str(seconds),
            accept,
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    )
    if out.returncode:
        raise RuntimeError(f'httpload failed: {out.stderr}')
    return dict(json.loads(out.stdout), tool='httpx', connections=connections, seconds=seconds)


def timed(fn, *args, **kw) -> tuple[float, object]:
    start = time.perf_counter()
    res = fn(*args, **kw)
    return time.perf_counter() - start, res
