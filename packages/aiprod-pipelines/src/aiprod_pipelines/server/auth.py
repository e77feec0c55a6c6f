"""Optional bearer-token authentication of every request (except the open paths).

With a token configured (``AIPROD_API_TOKEN``), a request without
``Authorization: Bearer <token>`` is answered 401 with ``WWW-Authenticate: Bearer``
before it reaches any route, unknown paths included, so nothing leaks without the token.
"""

from __future__ import annotations

import hmac
from collections.abc import Collection

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

REALM = "aiprod"


def token_problem(authorization: str | None, token: str) -> str | None:
    """Why ``authorization`` (the header's value) does not carry ``token``; None when it does."""
    if not authorization:
        return "missing bearer token: send the header 'Authorization: Bearer <token>'"
    scheme, _, credentials = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        return "malformed Authorization header: expected 'Bearer <token>'"
    offered = credentials.strip().encode("latin-1", errors="replace")
    if not hmac.compare_digest(offered, token.encode("utf-8")):
        return "invalid bearer token"
    return None


class BearerAuthMiddleware:
    """ASGI middleware answering 401 unless the request carries the bearer token."""

    def __init__(self, app: ASGIApp, token: str, open_paths: Collection[str]) -> None:
        if not token:
            raise ValueError("BearerAuthMiddleware needs a non-empty token")
        self.app = app
        self.token = token
        self.open_paths = frozenset(open_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.open_paths:
            await self.app(scope, receive, send)
            return
        problem = token_problem(Headers(scope=scope).get("authorization"), self.token)
        if problem is None:
            await self.app(scope, receive, send)
            return
        challenge = f'Bearer realm="{REALM}"'
        if not problem.startswith("missing"):
            challenge += ', error="invalid_token"'
        response = JSONResponse(
            {"detail": problem, "field": None, "errors": []},
            status_code=401,
            headers={"WWW-Authenticate": challenge},
        )
        await response(scope, receive, send)
