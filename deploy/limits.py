"""A limit on request bodies, enforced as they arrive, so an oversized body is never read into memory."""
from __future__ import annotations

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ['BodyTooLarge', 'BodyLimit']


def _too_large(max_bytes: int) -> str:
    return f'the request body is larger than {max_bytes} bytes: send fewer or smaller images per request'


class BodyTooLarge(HTTPException):
    "Raised from `receive` once more than the allowed bytes have arrived; the app answers it with 413."
    def __init__(self, max_bytes: int): super().__init__(413, _too_large(max_bytes))


class BodyLimit:
    "Pure ASGI middleware: 413 for a Content-Length over `max_bytes`, or for a streamed body as soon as it passes it."
    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send):
        if scope['type'] != 'http': return await self.app(scope, receive, send)
        length = Headers(scope=scope).get('content-length')
        if length is not None:
            if not length.strip().isdigit():
                msg = f'Content-Length {length!r} is not a number of bytes'
                return await JSONResponse({'detail': msg}, 400)(scope, receive, send)
            if int(length) > self.max_bytes:
                return await JSONResponse({'detail': _too_large(self.max_bytes)}, 413)(scope, receive, send)
        received, started = 0, False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message['type'] == 'http.request':
                received += len(message.get('body', b''))
                if received > self.max_bytes: raise BodyTooLarge(self.max_bytes)
            return message

        async def watched_send(message: Message):
            nonlocal started
            if message['type'] == 'http.response.start': started = True
            await send(message)

        try: await self.app(scope, limited_receive, watched_send)
        except BodyTooLarge as e: # raised where no exception handler turned it into a response
            if started: raise
            await JSONResponse({'detail': e.detail}, 413)(scope, receive, send)
