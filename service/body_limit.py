"""A limit on request bodies (RECSERVE_MAX_BODY_BYTES), enforced before the app reads them.

Without it a client could make a worker read and hold any amount before the 422 (or the 401: FastAPI reads a
body parameter first). FastAPI's own `max_body_size` was not used: it refuses only once the app reads the
body, a response the app sends without reading it turns into a plain-text 413 instead of the error body, and
its message names no limit.
"""
from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse


class BodyTooLarge(HTTPException):
    """Raised from `receive` when a body without Content-Length passes the limit. An HTTPException, so that
    FastAPI's body reading re-raises it untouched and the app's handler sends it as the error body."""

    def __init__(self, max_bytes: int):
        super().__init__(413, f"the request body exceeds the limit of {max_bytes} bytes (RECSERVE_MAX_BODY_BYTES)")


class BodyLimit:
    """413 for a body over `max_bytes`: at once, unread, when Content-Length says so; for a body without one
    (chunked), by counting what the app pulls and raising at the first message past the limit, so at most the
    limit plus one message is ever held."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            return await _refusal(BodyTooLarge(self.max_bytes))(scope, receive, send)
        if declared is not None:  # the server holds the client to it (h11 refuses more), so nothing to count
            return await self.app(scope, receive, send)
        received = 0

        async def counting_receive():
            # Only handlers read bodies here, and their exception handling (the router's exception middleware,
            # HotRoutes) turns an HTTPException into the error body.
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise BodyTooLarge(self.max_bytes)
            return message

        await self.app(scope, counting_receive, send)


def _refusal(exc: BodyTooLarge) -> JSONResponse:
    """The error body, as the app's handler for an HTTPException sends it."""
    return JSONResponse({"detail": exc.detail, "field": None}, status_code=exc.status_code)


def _content_length(scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None
