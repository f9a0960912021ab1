"""Who may call what, decided before any route runs or any body is read: one pure ASGI middleware.

Why not a FastAPI dependency: FastAPI reads and parses a body parameter before it solves the route's
dependencies, so a key checked there came after the body (bad JSON without the key was a 422, not a 401, and
the whole body had been read); and the hot routes (`service.hot_routes`) skip the router and its dependencies
altogether. Here one check covers every route, the mounted docs assets and paths no route serves.

The rules:
- `open_paths` (the health probes; with RECSERVE_PUBLIC_DOCS also /docs, /redoc and /openapi.json) and paths
  under `open_prefixes` (then the docs assets) answer anyone;
- admin routes (`admin_paths`) need `Authorization: Bearer <RECSERVE_ADMIN_KEY>` when that key is set, and
  the API key does not open them; without an admin key they answer loopback clients only (127.0.0.0/8, ::1),
  which must also send the API key when one is set. A reload is cheap to ask for and costly to serve, so it is
  never open to the network by default. Behind a reverse proxy on the same host every client is loopback:
  set the admin key there (docs/deploy.md);
- every other path needs `Authorization: Bearer <RECSERVE_API_KEY>` when that key is set.
"""
from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterable

from pydantic import SecretStr
from starlette.responses import JSONResponse

from service.hot_routes import route_path


ADMIN_PREFIX = "/admin/"  # every route under it is an admin route, whatever its path parameters


class AccessControl:
    def __init__(self, app, api_key: SecretStr | None, admin_key: SecretStr | None, admin_paths: Iterable[str],
                 open_paths: Iterable[str], open_prefixes: Iterable[str] = ()):
        self.app = app
        self.api_key, self.admin_key = _secret(api_key), _secret(admin_key)
        self.admin_paths = frozenset(admin_paths)
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
        admin = path in self.admin_paths or path.startswith(ADMIN_PREFIX)  # a templated admin path included
        return self._admin_refusal(scope) if admin else self._api_refusal(scope)

    def _admin_refusal(self, scope) -> JSONResponse | None:
        if self.admin_key is not None:
            if _bearer_is(scope, self.admin_key):
                return None
            return error(401, "missing or wrong admin key: send 'Authorization: Bearer <RECSERVE_ADMIN_KEY>'")
        if not _loopback(scope):
            return error(403, "admin routes answer only loopback clients while RECSERVE_ADMIN_KEY is unset: "
                              "set it and send 'Authorization: Bearer <admin key>'")
        return self._api_refusal(scope)

    def _api_refusal(self, scope) -> JSONResponse | None:
        if self.api_key is None or _bearer_is(scope, self.api_key):
            return None
        return error(401, "missing or wrong API key: send 'Authorization: Bearer <key>'")


def error(status: int, message: str) -> JSONResponse:
    """The service's error body; a 401 also names the scheme it wants (RFC 9110)."""
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"detail": message, "field": None}, status_code=status, headers=headers)


def _secret(key: SecretStr | None) -> bytes | None:
    return None if key is None else key.get_secret_value().encode()


def _loopback(scope) -> bool:
    """Whether the peer is a loopback address; an unknown peer (no address, e.g. a Unix socket) is not."""
    host = (scope.get("client") or ("",))[0]
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if address.version == 6 and address.ipv4_mapped:  # ::ffff:127.0.0.1 from a dual-stack socket
        address = address.ipv4_mapped
    return address.is_loopback


def _bearer_is(scope, key: bytes) -> bool:
    """Whether the request's `Authorization: Bearer <token>` carries `key` (compared in constant time)."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), key)
    return False
