"""Who may call what, decided before any route runs or any body is read: one pure ASGI middleware.

Why not a FastAPI dependency: FastAPI reads and parses a body parameter before it solves the route's
dependencies, so a key checked there came after the body (bad JSON without the key was a 422, not a 401, and
the whole body had been read); and the hot routes (`service.hot_routes`) skip the router and its dependencies
altogether. Here one check covers every route, the mounted docs assets and paths no route serves.

The rules:
- `open_paths` (the health probes; with RECSERVE_PUBLIC_DOCS also /docs, /redoc and /openapi.json) and paths
  under `open_prefixes` (then the docs assets) answer anyone;
- every other path needs `Authorization: Bearer <RECSERVE_API_KEY>` when that key is set.
"""
from __future__ import annotations

import hmac
from collections.abc import Iterable

from pydantic import SecretStr
from starlette.responses import JSONResponse

from service.hot_routes import route_path


class AccessControl:
    def __init__(self, app, api_key: SecretStr | None, open_paths: Iterable[str], open_prefixes: Iterable[str] = ()):
        self.app = app
        self.api_key = _secret(api_key)
        self.open_paths, self.open_prefixes = frozenset(open_paths), tuple(open_prefixes)

    async def __call__(self, scope, receive, send):
        refusal = self.refusal(scope) if scope["type"] in ("http", "websocket") else None
        if refusal is None:
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket":  # none is served today; one added later is not open by accident
            return await send({"type": "websocket.close", "code": 1008})
        await refusal(scope, receive, send)

    def refusal(self, scope) -> JSONResponse | None:
        """The error response for this request, or None to let it through."""
        path = route_path(scope)
        if path in self.open_paths or path.startswith(self.open_prefixes):
            return None
        if self.api_key is not None and not _bearer_is(scope, self.api_key):
            return error(401, "missing or wrong API key: send 'Authorization: Bearer <key>'")
        return None


def error(status: int, message: str) -> JSONResponse:
    """The service's error body; a 401 also names the scheme it wants (RFC 9110)."""
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"detail": message, "field": None}, status_code=status, headers=headers)


def _secret(key: SecretStr | None) -> bytes | None:
    return None if key is None else key.get_secret_value().encode()


def _bearer_is(scope, key: bytes) -> bool:
    """Whether the request's `Authorization: Bearer <token>` carries `key` (compared in constant time)."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), key)
    return False
