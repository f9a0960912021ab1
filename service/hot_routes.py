"""POST /rank and /recommend handed straight to their endpoints, past the layers below the user middleware.

Below the user middleware, FastAPI and Starlette run per request: an exception middleware, a middleware that
opens an AsyncExitStack, route matching, and FastAPI's `request_response` (a `Request`, two more
AsyncExitStacks and a second exception wrapper around `send`). The hot endpoints take the bare request and
solve no dependencies, so for them all of that is overhead: about a sixth of a warm /rank's instructions
(docs/benchmarks.md, section 3).

`HotRoutes` is the innermost user middleware. Outside it sit `BodyLimit` (`service.body_limit`) and
`AccessControl` (the keys, `service.access`), which check every route, `LatencyMiddleware` (so metrics are
unchanged) and FastAPI's own outer layers: its body-size limit, which passes every request through since the
app sets no `max_body_size`; exception telemetry; and Starlette's `ServerErrorMiddleware`, which turns an
exception no handler takes into the app's logged 500. `HotRoutes` calls the endpoint, turns an exception into
the response of the app's handler for it, as the exception middleware would, and sends the response. Every
other request goes down the usual stack. The routes stay on the router, which documents them in OpenAPI.

It passes the endpoint the request and nothing else, so it refuses, when built, a route that declares
anything FastAPI would have done for it: dependencies (the route's, its router's or the app's), parameters to
parse (body, query, path, header, cookie), a `Response`, `BackgroundTasks` or `SecurityScopes` parameter, a
route-level `max_body_size`, or a plain `def` endpoint. The error names the route: serve it the usual way, or
do that work in the endpoint, as /rank does with its body.
"""
from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any

import fastapi.routing
from fastapi import FastAPI
from fastapi.routing import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request


class HotRoutes:
    def __init__(self, app, routes: Iterable[Any]):
        self.app = app
        # path -> (endpoint, the router's own route: what FastAPI's router puts in scope["route"], and the
        # latency middleware labels the request with), unwrapped once rather than per request
        self.routes = {path: (route.endpoint, getattr(route, "original_route", route))
                       for path, route in accept(routes).items()}

    async def __call__(self, scope, receive, send):
        hot = self.routes.get(route_path(scope)) if scope["type"] == "http" and scope["method"] == "POST" else None
        if hot is None:
            return await self.app(scope, receive, send)
        endpoint, scope["route"] = hot
        request = Request(scope, receive, send)
        try:
            response = await endpoint(request)
        except Exception as exc:
            handler = _handler(scope["app"].exception_handlers, exc)
            if handler is None:
                raise
            if inspect.iscoroutinefunction(handler):
                response = await handler(request, exc)
            else:
                response = await run_in_threadpool(handler, request, exc)
        await response(scope, receive, send)


def route_path(scope) -> str:
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


def served_routes(app: FastAPI, router: APIRouter) -> list[Any]:
    """`router`'s routes as `app` serves them: with the prefixes and dependencies the app and the include add.
    (FastAPI 0.16x keeps an included router's routes apart and merges them in `iter_route_contexts`; earlier
    versions copy them, merged, into `app.routes`.)"""
    contexts = getattr(fastapi.routing, "iter_route_contexts", None)
    endpoints = {route.endpoint for route in router.routes}
    routes = contexts(app.routes) if contexts else app.routes
    return [route for route in routes if getattr(route, "endpoint", None) in endpoints]


def accept(routes: Iterable[Any]) -> dict[str, Any]:
    """The POST routes by path; a ValueError naming the first one that declares what `HotRoutes` would skip."""
    accepted = {}
    for route in routes:
        if "POST" not in (route.methods or ()):
            continue
        skipped = _skipped(route)
        if skipped:
            raise ValueError(f"HotRoutes cannot serve POST {route.path} ({route.name}): it declares "
                             f"{'; '.join(skipped)}, which HotRoutes would skip (it passes the endpoint the "
                             "request alone). Serve the route through the router, or do that in the endpoint.")
        accepted[route.path] = route
    return accepted


def _skipped(route) -> list[str]:
    """What FastAPI would do for `route` that calling its endpoint with the request does not."""
    dependant, skipped = route.dependant, []
    if dependant.dependencies:
        names = [getattr(d.call, "__name__", repr(d.call)) for d in dependant.dependencies]
        skipped.append(f"dependencies {', '.join(names)}")
    params = [*dependant.path_params, *dependant.query_params, *dependant.header_params, *dependant.cookie_params,
              *dependant.body_params]
    if params:
        skipped.append(f"parameters {', '.join(p.name for p in params)}")
    special = [name for name in (dependant.response_param_name, dependant.background_tasks_param_name,
                                 dependant.security_scopes_param_name) if name]
    if special:
        skipped.append(f"parameters {', '.join(special)} (Response, BackgroundTasks or SecurityScopes)")
    if dependant.request_param_name is None:
        skipped.append("no Request parameter")
    if getattr(route, "max_body_size", None) is not None:
        skipped.append(f"max_body_size={route.max_body_size}")
    if not inspect.iscoroutinefunction(route.endpoint):
        skipped.append("a plain `def` endpoint (HotRoutes awaits it)")
    return skipped
