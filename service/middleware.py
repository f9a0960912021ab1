"""Request latency per route template and model, as a plain ASGI middleware (no per-request task overhead),
and the access log (RECSERVE_ACCESS_LOG): one line per request with its request id, where it has one."""
from __future__ import annotations

import logging
import time

from service.metrics import Metrics


access = logging.getLogger("recserve.access")


class LatencyMiddleware:
    def __init__(self, app, metrics: Metrics, access_log: bool = False):
        self.app, self.metrics, self.access_log = app, metrics, access_log

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), [500]

        async def send_status(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            seconds = time.perf_counter() - start
            route = getattr(scope.get("route"), "path", "unmatched")
            state = scope.get("state", {})
            self.metrics.child(self.metrics.request_seconds, route, state.get("model", ""), str(status[0])).observe(
                seconds)
            if self.access_log:
                client = scope.get("client") or ("-", 0)
                access.info('%s "%s %s" %d %.1fms %s', client[0], scope["method"], scope["path"], status[0],
                            seconds * 1000, state.get("request_id", "-"))
