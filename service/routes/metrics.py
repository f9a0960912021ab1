"""GET /metrics: Prometheus text."""
from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from service.errors import documented
from service.routes.deps import MetricsDep

router = APIRouter(tags=["metrics"], responses=documented(401))


@router.get("/metrics", response_class=Response)
async def metrics(metrics: MetricsDep) -> Response:
    """Request latency per route and model, cache hits and misses by kind, onnxruntime time per model and
    graph, and `recserve_cache_degraded` (1 while Redis is configured but unreachable)."""
    return Response(metrics.render(), media_type=metrics.content_type)
