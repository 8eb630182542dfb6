"""What an unattended service needs to be watched: Prometheus metrics at `/metrics`, a request id on every request,
and JSON log lines that carry it.

`Observe` is a pure ASGI middleware (no `BaseHTTPMiddleware`, which costs a task and a stream per request): it reads
`X-Request-ID` (or makes one), returns it in the response, counts the request and its latency by route template and
status, and logs one `mlproj.access` line. With several worker processes (`mlproj serve --workers N` sets
`PROMETHEUS_MULTIPROC_DIR`), `/metrics` adds up every worker's figures."""

from __future__ import annotations

import contextvars
import json
import logging
import os
import re
import time
from datetime import datetime, timezone

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.requests import ClientDisconnect

from .limits import CLIENT_GONE

__all__ = ['JsonFormatter', 'Metrics', 'Observe', 'observe', 'request_id', 'router']

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar('request_id', default=None)
access_log = logging.getLogger('mlproj.access')

_GOOD_ID = re.compile(r'[A-Za-z0-9._:@/+=-]{1,128}')  # an id a client sends is kept if it is this; else one is made
_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


def _multiproc() -> str | None:
    return os.environ.get('PROMETHEUS_MULTIPROC_DIR') or os.environ.get('prometheus_multiproc_dir')


class Metrics:
    "The service's Prometheus metrics, in a registry of their own (one per app: tests build many apps in one process)."

    def __init__(self):
        r = self.registry = CollectorRegistry()
        self.requests = Counter(
            'mlproj_http_requests',
            'HTTP requests answered, by route template, method and status',
            ['route', 'method', 'status'],
            registry=r,
        )
        self.latency = Histogram(
            'mlproj_http_request_duration_seconds',
            'Time from a request to the end of its response',
            ['route', 'method', 'status'],
            buckets=_BUCKETS,
            registry=r,
        )
        self.predictions = Counter(
            'mlproj_predictions', 'Digits answered by /predict, by predicted label', ['label'], registry=r
        )
        self.shared = Histogram(
            'mlproj_model_call_requests',
            'Requests answered by each model call of /predict for small '
            'batches (those read in the same turn of the event loop share one call)',
            buckets=(1, 2, 4, 8, 16, 32),
            registry=r,
        )
        self.version = Gauge(
            'mlproj_model_version',
            'The model version this process serves (0: none)',
            registry=r,
            multiprocess_mode='liveall',
        )
        self.swaps = Counter('mlproj_model_reloads', 'Swaps to another model version while serving', registry=r)
        self.disconnects = Counter(
            'mlproj_http_client_disconnects',
            'Requests whose client went away before its request '
            'body had arrived (nothing was answered: not counted in mlproj_http_requests)',
            ['route', 'method'],
            registry=r,
        )
        self.large_bodies = Counter(
            'mlproj_large_json_bodies',
            'JSON bodies of /predict over 256 kB, parsed in a process of '
            'their own so that the event loop never waits on them',
            registry=r,
        )
        self.failures = Counter(
            'mlproj_model_load_failures',
            'Model versions that could not be loaded or were refused (at startup or on reload)',
            registry=r,
        )
        self._labels = {}

    def request(self, route: str, method: str, status: int, seconds: float):
        key = (route, method, status)
        pair = self._labels.get(key)  # children cached: labels() costs more than inc()
        if pair is None:
            pair = self._labels[key] = (
                self.requests.labels(route, method, str(status)),
                self.latency.labels(route, method, str(status)),
            )
        pair[0].inc()
        pair[1].observe(seconds)

    def predicted(self, labels: list[int]):
        "Count the labels of one /predict answer."
        if len(labels) == 1 and (child := self._labels.get(labels[0])) is not None:
            return child.inc()  # the common case
        for label in set(labels):
            child = self._labels.get(label)
            if child is None:
                child = self._labels[label] = self.predictions.labels(str(label))
            child.inc(labels.count(label))

    def loaded(self, version: int | None, error: str | None = None):
        "The model served now (None: none); `error`: a load failed."
        self.version.set(version or 0)
        if error:
            self.failures.inc()

    def failed(self, reason: str):
        "A new version was refused on reload."
        self.failures.inc()

    def swapped(self, old: int | None, new: int):
        self.swaps.inc()
        self.version.set(new)

    def exposition(self) -> bytes:
        "The text format Prometheus scrapes: this process's metrics, or every worker's in multiprocess mode."
        if _multiproc():
            from prometheus_client import multiprocess

            r = CollectorRegistry()
            multiprocess.MultiProcessCollector(r)
            return generate_latest(r)
        return generate_latest(self.registry)


def _route(scope) -> str:
    route = scope.get('route')
    return (
        getattr(route, 'path', None) or 'unmatched'
    )  # never the raw path: a scanner's URLs would each be a new series


class Observe:
    "Pure ASGI middleware: request id (X-Request-ID in or made, and returned), metrics by route and status, one access log line."

    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope['type'] != 'http':
            return await self.app(scope, receive, send)
        rid = None
        for k, v in scope['headers']:
            if k == b'x-request-id':
                rid = v.decode('latin-1')
                break
        if rid is None or not _GOOD_ID.fullmatch(rid):
            rid = os.urandom(16).hex()  # 32 hex digits as uuid4().hex gives, without building a UUID (3 us against 0.9)
        token, status, t0 = request_id.set(rid), 500, time.perf_counter()
        header = (b'x-request-id', rid.encode())

        async def send_with_id(message):
            nonlocal status
            if message['type'] == 'http.response.start':
                status = message['status']
                message['headers'] = [*message.get('headers', ()), header]
            await send(message)

        gone = False
        try:
            await self.app(scope, receive, send_with_id)
        except ClientDisconnect:
            gone = True  # nobody to answer: no 500, no traceback
        finally:
            seconds, route = time.perf_counter() - t0, _route(scope)
            client = (scope.get('client') or ('',))[0]
            received = (scope.get('state') or {}).get(CLIENT_GONE)
            if gone or received is not None:  # the client left mid-body: its own counter and one line, not a status
                self.metrics.disconnects.labels(route, scope['method']).inc()
                access_log.warning(
                    '%s %s: the client went away before its request body arrived (%s bytes of it received)',
                    scope['method'],
                    scope['path'],
                    '?' if received is None else received,
                    extra=dict(route=route, ms=round(seconds * 1000, 3), client=client),
                )
            else:
                self.metrics.request(route, scope['method'], status, seconds)
                if access_log.isEnabledFor(logging.INFO):
                    access_log.info(
                        '%s %s %d',
                        scope['method'],
                        scope['path'],
                        status,
                        extra=dict(route=route, status=status, ms=round(seconds * 1000, 3), client=client),
                    )
            request_id.reset(token)


class JsonFormatter(logging.Formatter):
    "One JSON object a line: time, level, logger, message, the request id when there is one, and the record's extra fields."

    EXTRA = ('route', 'status', 'ms', 'client')

    def format(self, record: logging.LogRecord) -> str:
        out = dict(
            time=datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec='milliseconds'),
            level=record.levelname,
            logger=record.name,
            message=record.getMessage(),
        )
        if (rid := request_id.get()) is not None:
            out['request_id'] = rid
        for k in self.EXTRA:
            if k in record.__dict__:
                out[k] = record.__dict__[k]
        if record.exc_info:
            out['exception'] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


router = APIRouter()


@router.get('/metrics', include_in_schema=False)
async def metrics(request: Request) -> Response:
    "Prometheus metrics (text exposition format)."
    return Response(request.app.state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


def observe(app) -> Metrics:
    "Give `app` its metrics (app.state.metrics), the `Observe` middleware and the /metrics route."
    app.state.metrics = Metrics()
    app.add_middleware(Observe, metrics=app.state.metrics)
    app.include_router(router)
    return app.state.metrics
