"""Request latency per route template and model, as a plain ASGI middleware (no per-request task overhead)."""
from __future__ import annotations

import time

from service.metrics import Metrics


class LatencyMiddleware:
    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics

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
            route = getattr(scope.get("route"), "path", "unmatched")
            model = scope.get("state", {}).get("model", "")
            self.metrics.child(self.metrics.request_seconds, route, model, str(status[0])).observe(
                time.perf_counter() - start)
