"""POST /rank and /recommend handed straight to their endpoints, past the layers below the user middleware.

Below the user middleware, FastAPI and Starlette run per request: an exception middleware, a middleware that
opens an AsyncExitStack, route matching, and FastAPI's `request_response` (a `Request`, two more
AsyncExitStacks and a second exception wrapper around `send`). The hot endpoints take the bare request and
solve no dependencies, so for them all of that is overhead: about a sixth of a warm /rank's instructions
(docs/benchmarks.md, section 3). `HotRoutes` sits inside the latency middleware, so metrics and the outer
layers (body limit, server errors) are unchanged; it calls the endpoint, turns an exception into the response
of the app's handler for it, as the exception middleware would, and sends the response. Every other request
goes down the usual stack. The routes stay on the router, which documents them in OpenAPI.
"""
from __future__ import annotations

import inspect
from collections.abc import Iterable

from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request


class HotRoutes:
    def __init__(self, app, routes: Iterable[APIRoute]):
        self.app = app
        self.routes = {route.path: route for route in routes if "POST" in route.methods}

    async def __call__(self, scope, receive, send):
        route = self.routes.get(_route_path(scope)) if scope["type"] == "http" and scope["method"] == "POST" else None
        if route is None:
            return await self.app(scope, receive, send)
        scope["route"] = route  # what the latency middleware labels the request with
        request = Request(scope, receive, send)
        try:
            response = await route.endpoint(request)
        except Exception as exc:
            handler = _handler(scope["app"].exception_handlers, exc)
            if handler is None:
                raise
            if inspect.iscoroutinefunction(handler):
                response = await handler(request, exc)
            else:
                response = await run_in_threadpool(handler, request, exc)
        await response(scope, receive, send)


def _route_path(scope) -> str:
    """The path the router matches: without the root path the app is mounted under."""
    path, root = scope["path"], scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root) else path


def _handler(handlers: dict, exc: Exception):
    """The app's handler for `exc`, as the exception middleware finds it: by status code for an HTTPException,
    else by the nearest class; None for the catch-all (`Exception` or 500), which FastAPI leaves to the
    server-error middleware outside (a logged 500)."""
    if isinstance(exc, HTTPException) and exc.status_code != 500 and exc.status_code in handlers:
        return handlers[exc.status_code]
    for cls in type(exc).__mro__:
        if cls is Exception:
            return None
        if cls in handlers:
            return handlers[cls]
    return None
