"""`python -m deploy.serve UVICORN-ARGS`: uvicorn's command line, exiting 0 once a SIGTERM has drained the requests in flight.

uvicorn stops accepting connections on SIGTERM, lets the requests in progress finish, runs the app's shutdown, then
raises the signal again with the handler it found at start. Left at the default, that ends the process by the signal
(exit status 143, which supervisors count as a failure); this sets a handler that exits 0 instead.

With `--workers N` above 1 each worker process keeps its own counters; Prometheus' multiprocess mode adds them up
at `/metrics`: a fresh `PROMETHEUS_MULTIPROC_DIR` is made for the workers unless one is given, and removed at exit.

Unless `--http` is given, uvicorn runs `deploy.protocol.HeaderTimeout`: its own HTTP protocol (httptools, else h11) with
a deadline for request heads, `[serving] header_timeout`, which uvicorn lacks."""
from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile

__all__ = ['main']


def _workers(argv: list[str]) -> int:
    for i, a in enumerate(argv):
        if a == '--workers' and i + 1 < len(argv): return int(argv[i + 1])
        if a.startswith('--workers='): return int(a.split('=', 1)[1])
    return int(os.environ.get('WEB_CONCURRENCY', 1))


def main(argv: list[str] | None = None):
    "Run uvicorn's command line with `argv` (default: ours); SIGTERM and SIGINT end it with exit code 0 after draining."
    import uvicorn
    argv = sys.argv[1:] if argv is None else argv
    if not any(a == '--http' or a.startswith('--http=') for a in argv): argv = [*argv, '--http', 'deploy.protocol:HeaderTimeout']
    own = None
    if _workers(argv) > 1 and not os.environ.get('PROMETHEUS_MULTIPROC_DIR'):
        own = os.environ['PROMETHEUS_MULTIPROC_DIR'] = tempfile.mkdtemp(prefix='mlproj-metrics-')
    for sig in (signal.SIGTERM, signal.SIGINT): signal.signal(sig, lambda *_: sys.exit(0))
    try: uvicorn.main.main(args=argv, prog_name='uvicorn')
    finally:
        if own: shutil.rmtree(own, ignore_errors=True)


if __name__ == '__main__': main()
