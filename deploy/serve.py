"""`python -m deploy.serve UVICORN-ARGS`: uvicorn's command line, exiting 0 once a SIGTERM has drained the requests in flight.

uvicorn stops accepting connections on SIGTERM, lets the requests in progress finish, runs the app's shutdown, then
raises the signal again with the handler it found at start. Left at the default, that ends the process by the signal
(exit status 143, which supervisors count as a failure); this sets a handler that exits 0 instead.

With `--workers N` above 1 each worker process keeps its own counters; Prometheus' multiprocess mode adds them up
at `/metrics`: a fresh `PROMETHEUS_MULTIPROC_DIR` is made for the workers unless one is given, and removed at exit.
Logs are JSON by default (deploy/logging.json beside this file) unless `--log-config` names another configuration.

Unless `--http` is given, uvicorn runs `deploy.protocol.HeaderTimeout`: its own HTTP protocol (httptools, else h11) with
a deadline for request heads, `[serving] header_timeout`, which uvicorn lacks.

X-Forwarded-For is believed only from the proxies `[serving] trusted_proxies` names (uvicorn's `--forwarded-allow-ips`);
with none named, uvicorn's proxy headers are off. uvicorn's own default trusts 127.0.0.1, so any client on the machine
(or a proxy that passes the header through) could pose as another address and escape per-client limits. Run by plain
`uvicorn`, pass `--no-proxy-headers` or `--forwarded-allow-ips` yourself."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

__all__ = ['LOG_CONFIG', 'main', 'trusted_proxies']

LOG_CONFIG = Path(__file__).with_name('logging.json')  # JSON logs, the access log our own (deploy/observe.py)


def _workers(argv: list[str]) -> int:
    for i, a in enumerate(argv):
        if a == '--workers' and i + 1 < len(argv):
            return int(argv[i + 1])
        if a.startswith('--workers='):
            return int(a.split('=', 1)[1])
    return int(os.environ.get('WEB_CONCURRENCY', '1'))


def trusted_proxies(
    text: str,  # [serving] trusted_proxies: addresses or networks, comma-separated
) -> list[str]:
    "The proxies whose X-Forwarded-For is believed; SystemExit naming an entry that is not an address or a network."
    import ipaddress

    out = [p.strip() for p in text.split(',') if p.strip()]
    for p in out:
        try:
            ipaddress.ip_network(p, strict=False)
        except ValueError:
            raise SystemExit(
                f'[serving] trusted_proxies: {p!r} is not an IP address or network (10.0.0.1, 10.0.0.0/8)'
            ) from None
    return out


def _proxy_args(argv: list[str]) -> list[str]:
    "uvicorn's proxy-header options from [serving] trusted_proxies, unless `argv` sets them."
    if any(a.split('=', 1)[0] in ('--proxy-headers', '--no-proxy-headers', '--forwarded-allow-ips') for a in argv):
        return []
    from mlproj.settings import load_settings

    proxies = trusted_proxies(load_settings().serving.trusted_proxies)
    return ['--proxy-headers', '--forwarded-allow-ips', ','.join(proxies)] if proxies else ['--no-proxy-headers']


def main(argv: list[str] | None = None):
    "Run uvicorn's command line with `argv` (default: ours); SIGTERM and SIGINT end it with exit code 0 after draining."
    import uvicorn

    argv = sys.argv[1:] if argv is None else argv
    if not any(a == '--log-config' or a.startswith('--log-config=') for a in argv):
        argv = [*argv, '--log-config', str(LOG_CONFIG)]
    if not any(a == '--http' or a.startswith('--http=') for a in argv):
        argv = [*argv, '--http', 'deploy.protocol:HeaderTimeout']
    argv = [*argv, *_proxy_args(argv)]
    own = None
    if _workers(argv) > 1 and not os.environ.get('PROMETHEUS_MULTIPROC_DIR'):
        own = os.environ['PROMETHEUS_MULTIPROC_DIR'] = tempfile.mkdtemp(prefix='mlproj-metrics-')
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: sys.exit(0))
    try:
        uvicorn.main.main(args=argv, prog_name='uvicorn')
    finally:
        if own:
            shutil.rmtree(own, ignore_errors=True)


if __name__ == '__main__':
    main()
