"""GET /healthz (alive) and GET /readyz (models loaded, cache state). Never behind the API key."""
from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, PlainTextResponse

from service.routes.deps import RegistryDep, StoreDep

router = APIRouter(tags=["health"])


@router.get("/healthz", response_class=PlainTextResponse)
async def healthz() -> PlainTextResponse:
    """The process is alive. Cheap: touches nothing."""
    return PlainTextResponse("ok")


@router.get("/readyz")
async def readyz(registry: RegistryDep, store: StoreDep) -> JSONResponse:
    """200 when every model found under the artifacts folder is loaded, else 503. `cache` is "up",
    "degraded" (Redis unreachable: answers are computed, not fetched) or "in-process" (no Redis configured)."""
    cache = await run_in_threadpool(store.check)
    models = {name: model.version for name, model in registry.models.items()}
    ready = bool(models) and not registry.failed
    body = {"status": "ready" if ready else "not ready", "models": models, "failed": registry.failed,
            "cache": cache}
    return JSONResponse(body, status_code=200 if ready else 503)
