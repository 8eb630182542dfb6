"""uvicorn's HTTP protocol with a deadline for request headers: a connection that has not sent a whole request head
within `[serving] header_timeout` seconds is closed.

uvicorn has no such timeout (its issue 157 lists `--timeout-request-start` as not done): `timeout_keep_alive` covers
only the idle time after a response, and it is cancelled by the first byte received, so a client that sends half its
headers, or trickles them a byte at a time, or connects and sends nothing, holds a connection (and a file descriptor)
for ever. ASGI middleware cannot help: the app is called only once the headers are complete. The deadline here starts
when a connection is made and again when a response has been sent (the next request's head is due), and stops when a
request's head is complete; the body has its own timeout ([serving] body_timeout, in `deploy.limits.Guard`).

`python -m deploy.serve` (what `mlproj serve` runs) passes `--http deploy.protocol:HeaderTimeout` to uvicorn; it
builds on httptools where it is installed (as uvicorn's `auto` does), else on h11."""

from __future__ import annotations

import functools
import logging

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _Base
except ImportError:
    from uvicorn.protocols.http.h11_impl import H11Protocol as _Base  # pragma: no cover

__all__ = ['HeaderTimeout', 'header_timeout']

log = logging.getLogger(__name__)


@functools.cache
def header_timeout() -> float:
    "Seconds a connection has to send a request's head: settings.ini [serving] header_timeout (MLPROJ_SERVING_HEADER_TIMEOUT)."
    from mlproj.settings import load_settings

    return load_settings().serving.header_timeout


class HeaderTimeout(_Base):
    "uvicorn's HTTP protocol (httptools, else h11), closing a connection whose request head is not complete in time."

    def connection_made(self, transport):
        super().connection_made(transport)
        self._head_timer, self._waiting_for = None, self.cycle
        self._arm()

    def _arm(self):
        "Start the deadline for the next request's head (the current cycle is the last one answered)."
        self._disarm()
        seconds = header_timeout()
        if seconds > 0:
            self._head_timer, self._waiting_for = self.loop.call_later(seconds, self._too_slow), self.cycle

    def _disarm(self):
        if self._head_timer is not None:
            self._head_timer.cancel()
        self._head_timer = None

    def data_received(self, data: bytes):
        super().data_received(data)  # parses at once: a complete head makes a new request cycle
        if self._head_timer is not None and (self.cycle is not self._waiting_for or self._upgraded()):
            self._disarm()

    def _upgraded(self) -> bool:
        return self.transport.get_protocol() is not self  # a WebSocket took the connection over

    def on_response_complete(self):
        super().on_response_complete()
        if not self.transport.is_closing() and (self.cycle is None or self.cycle.response_complete):
            self._arm()

    def connection_lost(self, exc):
        self._disarm()
        super().connection_lost(exc)

    def _too_slow(self):
        self._head_timer = None
        if self.transport.is_closing() or self._upgraded():
            return
        client = f'{self.client[0]}:{self.client[1]}' if self.client else 'a client'
        log.warning(
            'closed the connection of %s: no complete request head within %g s ([serving] header_timeout)',
            client,
            header_timeout(),
        )
        self.transport.close()
