"""A bound on request bodies: nothing larger than MAX_BODY_BYTES is read into memory.

A video request is a prompt (``serving.max_prompt_length`` characters at most), a few
numbers and up to eight base64 images. 8 MiB lets one image of the largest accepted size
(``server.images.MAX_IMAGE_BYTES``, 4 MiB, 5.3 MiB as base64) through beside a few smaller
ones; anything larger is refused with 413 before the JSON parser or the app sees it,
whether the client declared its length or streamed it in chunks. Each image is bounded
again on its own (bytes and pixels) when the body is validated.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: The largest request body the server reads.
MAX_BODY_BYTES = 8 * 1024 * 1024


class BodyLimitMiddleware:
    """ASGI middleware answering 413 to a request whose body exceeds ``limit`` bytes."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await self._refuse(scope, receive, send)
            return
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                await self.app(scope, _replay([message]), send)
                return
            body += message.get("body", b"")
            more = bool(message.get("more_body", False))
            if len(body) > self.limit:
                await self._refuse(scope, receive, send)
                return
        replayed: list[Message] = [{"type": "http.request", "body": bytes(body)}]
        await self.app(scope, _replay(replayed, receive), send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = JSONResponse(
            {
                "detail": f"request body is larger than {self.limit} bytes; a video request "
                "is a prompt, a few numbers and at most a few MiB of images",
                "field": "body",
                "errors": [],
            },
            status_code=413,
        )
        await response(scope, receive, send)


def _replay(messages: list[Message], then: Receive | None = None) -> Receive:
    """A ``receive`` that returns ``messages`` first, then defers to ``then``."""
    pending = list(messages)

    async def receive() -> Message:
        if pending:
            return pending.pop(0)
        if then is None:
            return {"type": "http.disconnect"}
        return await then()

    return receive
