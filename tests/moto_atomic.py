"""moto's S3 server with each request handled whole, one at a time: `python tests/moto_atomic.py HOST PORT`.

`python -m moto.server` serves requests on threads, and its conditional PUT (If-Match, If-None-Match) checks the
ETag and then writes, two steps another thread can come between: two writers holding the same ETag can both
succeed, which real S3 never allows. The registry's compare-and-swap depends on that guarantee, so the tests run
moto with its requests serialized by one lock: as atomic as S3, still one process on loopback."""

import sys
import threading

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import run_simple


def serialized(app):
    "The WSGI app with every request, its body read and its answer produced, under one lock."
    lock = threading.Lock()

    def call(environ, start_response):
        with lock:
            return list(app(environ, start_response))

    return call


if __name__ == '__main__':
    host, port = sys.argv[1], int(sys.argv[2])
    run_simple(
        host,
        port,
        serialized(DomainDispatcherApplication(create_backend_app)),
        threaded=True,
        request_handler=MotoRequestHandler,
    )
