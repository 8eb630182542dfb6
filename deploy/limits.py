"""Limits on requests, enforced as they arrive: body size and time, requests in progress, threads and processes doing CPU work."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict

import anyio
import anyio.to_thread
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    'CLIENT_GONE',
    'BodyLimit',
    'BodyTimeout',
    'BodyTooLarge',
    'Guard',
    'Processes',
    'RateLimit',
    'Workers',
    'return_large_blocks',
]

MMAP_THRESHOLD = 1 << 20


def return_large_blocks(threshold: int = MMAP_THRESHOLD) -> bool:
    """Make glibc's malloc give every block of `threshold` bytes or more back to the system as soon as it is freed.

    By default glibc raises its mmap threshold to the size of the largest block freed (up to 32 MB), after which
    blocks that size come from per-thread arenas that keep up to twice that free without trimming: a decoded image
    of 16 MB, freed, stays in the process, and the peak depends on which threads did the decoding. A fixed threshold
    turns that adjustment off, so a process's peak memory is what is live at once, which settings.ini bounds.
    False where the C library has no `mallopt` (musl, macOS): their allocators were not measured."""
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    return bool(mallopt(M_MMAP_THRESHOLD, threshold)) and bool(mallopt(M_TRIM_THRESHOLD, 2 * threshold))


def _too_large(max_bytes: int) -> str:
    return f'the request body is larger than {max_bytes} bytes: send fewer or smaller images per request'


class BodyTooLarge(HTTPException):
    "Raised from `receive` once more than the allowed bytes have arrived; the app answers it with 413."

    def __init__(self, max_bytes: int):
        super().__init__(413, _too_large(max_bytes))


def _length(headers: list) -> tuple[bytes | None, bool]:
    "The first Content-Length of raw ASGI headers (names in lower case), and whether Transfer-Encoding is there."
    length, chunked = None, False
    for k, v in headers:
        if k == b'content-length':
            if length is None:
                length = v
        elif k == b'transfer-encoding':
            chunked = True
    return length, chunked


class BodyLimit:
    """Pure ASGI middleware: 413 for a Content-Length over `max_bytes`, or for a streamed body as soon as it passes it.

    A request with a Content-Length within the limit (and no Transfer-Encoding) goes on untouched: the HTTP parser
    hands the app no more body than that length, so counting its bytes again would only cost time."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send):
        if scope['type'] != 'http':
            return await self.app(scope, receive, send)
        length, chunked = _length(scope['headers'])
        if length is not None:
            length = length.decode('latin-1')
            if not length.strip().isdigit():
                msg = f'Content-Length {length!r} is not a number of bytes'
                return await JSONResponse({'detail': msg}, 400)(scope, receive, send)
            if int(length) > self.max_bytes:
                return await JSONResponse({'detail': _too_large(self.max_bytes)}, 413)(scope, receive, send)
            if not chunked:
                return await self.app(scope, receive, send)
        received, started = 0, False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message['type'] == 'http.request':
                received += len(message.get('body', b''))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def watched_send(message: Message):
            nonlocal started
            if message['type'] == 'http.response.start':
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, watched_send)
        except BodyTooLarge as e:  # raised where no exception handler turned it into a response
            if started:
                raise
            await JSONResponse({'detail': e.detail}, 413)(scope, receive, send)


class BodyTimeout(HTTPException):
    "Raised from `receive` when the body has not all arrived in time; answered with 408 and the connection closed."

    def __init__(self, seconds: float):
        super().__init__(
            408,
            f'the request body did not arrive within {seconds:g} seconds: send it at once, or send less',
            headers={'Connection': 'close'},
        )


CLIENT_GONE = 'mlproj.client_gone'  # in a request's scope['state']: bytes of its body received before its client left


class Guard:
    """Pure ASGI middleware: 503 past `max_concurrent` requests in progress, 408 for a body slower than `body_timeout`; a
    client that leaves mid-body is marked for `Observe`.

    The body's deadline is one timer a request (armed at the start, cancelled once the body is in), which cancels a wait
    for the body that is still going on when it fires: anyio's `move_on_after` around every `receive` cost 17 us a call
    (a cancel scope and its bookkeeping), the timer 2 us a request."""

    def __init__(self, app: ASGIApp, max_concurrent: int, body_timeout: float, exempt: tuple = ('/health',)):
        self.app, self.max_concurrent, self.body_timeout, self.exempt = app, max_concurrent, body_timeout, exempt
        self.active = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send):
        if scope['type'] != 'http' or scope['path'] in self.exempt:
            return await self.app(scope, receive, send)
        if self.active >= self.max_concurrent:
            msg = f'the server is busy ({self.max_concurrent} requests in progress): retry in a moment'
            return await JSONResponse({'detail': msg}, 503, headers={'Retry-After': '1'})(scope, receive, send)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.body_timeout
        done = expired = started = False
        received, waiter = 0, None  # waiter: the task waiting in `receive` for the body, if one is

        def expire():
            nonlocal expired
            if waiter is not None:  # between two waits nothing is cancelled: the next wait sees the deadline passed
                expired = True
                waiter.cancel()

        async def timed_receive() -> Message:
            nonlocal done, received, waiter, expired
            if done:
                return await receive()  # the body is in: what follows (a disconnect) may take any time
            if expired or loop.time() >= deadline:
                raise BodyTimeout(self.body_timeout)
            waiter = asyncio.current_task()
            try:
                message = await receive()
            except asyncio.CancelledError:
                if expired and waiter.uncancel() == 0:  # our timer's cancellation, and nobody else's
                    raise BodyTimeout(self.body_timeout) from None
                raise
            finally:
                waiter = None
            if message['type'] == 'http.request':
                received += len(message.get('body', b''))
                done = not message.get('more_body', False)
                if done:
                    timer.cancel()
            elif message['type'] == 'http.disconnect':  # gone before its body was in: `Observe` counts and logs it
                scope.setdefault('state', {})[CLIENT_GONE] = received
            return message

        async def watched_send(message: Message):
            nonlocal started
            if message['type'] == 'http.response.start':
                started = True
            await send(message)

        timer = loop.call_at(deadline, expire)
        self.active += 1
        try:
            await self.app(scope, timed_receive, watched_send)
        except BodyTimeout as e:  # raised where no exception handler turned it into a response
            if started:
                raise
            await JSONResponse({'detail': e.detail}, 408, headers=e.headers)(scope, receive, send)
        finally:
            timer.cancel()
            self.active -= 1


class Workers:
    "A bounded thread pool for work off the event loop (decoding images, parsing large bodies, database saves): at most `n` at once."

    def __init__(self, n: int):
        self.n, self._limiter = n, None

    async def run(self, fn, *args):
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.n)  # made inside the running event loop
        return await anyio.to_thread.run_sync(fn, *args, limiter=self._limiter)


class Processes:
    """A pool of `n` processes for CPU work that holds the GIL for long (parsing a large JSON body: orjson and numpy's list
    conversion hold it throughout): done in a thread, it delays every other request by as long, while another process
    cannot hold the event loop whatever it costs. At most `n` at once; the processes start on first use (forkserver: not
    a fork of this threaded process) and stop with `close`. Arguments and results cross a pipe: send bytes, get arrays."""

    def __init__(self, n: int):
        self.n, self._pool, self._limiter = n, None, None

    def _executor(self):
        if self._pool is None:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            self._pool = ProcessPoolExecutor(self.n, mp_context=multiprocessing.get_context('forkserver'))
        return self._pool

    async def run(self, fn, *args):
        "`fn(*args)` in one of the processes (`fn` importable by name); its exceptions are raised here."
        import asyncio

        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.n)
        from concurrent.futures.process import BrokenProcessPool

        async with self._limiter:  # submit in a thread: the first call starts the forkserver and a process
            pool = self._executor()
            try:
                return await asyncio.wrap_future(await anyio.to_thread.run_sync(pool.submit, fn, *args))
            except BrokenProcessPool:  # a process died (killed, out of memory): the next call starts new ones
                if self._pool is pool:
                    self._pool = None
                raise

    def close(self):
        "Stop the processes (work in progress is dropped)."
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool = None


class RateLimit:
    """At most `per_minute` events a client (a minute, or `seconds`), in bursts of as many: a token bucket per client, in
    this process (each worker counts its own). The least recently seen clients are forgotten past `clients`, so memory
    stays bounded. Not thread-safe: call it from the event loop. 0 a minute: no limit."""

    def __init__(self, per_minute: int, clients: int = 10_000, seconds: float = 60):
        self.per_minute, self.clients, self.seconds = per_minute, clients, seconds
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # client -> (tokens, when counted)

    def wait(self, client: str, now: float | None = None) -> float:
        "0 when `client` may go on now (one token taken); else the seconds until it may, and nothing is taken."
        if self.per_minute <= 0:
            return 0.0
        now = time.monotonic() if now is None else now
        tokens, then = self._buckets.pop(client, (float(self.per_minute), now))
        tokens = min(float(self.per_minute), tokens + (now - then) * self.per_minute / self.seconds)
        self._buckets[client] = (tokens - 1, now) if tokens >= 1 else (tokens, now)
        if len(self._buckets) > self.clients:
            self._buckets.popitem(last=False)
        return 0.0 if tokens >= 1 else (1 - tokens) * self.seconds / self.per_minute
