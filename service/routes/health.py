"""GET /healthz (alive) and GET /readyz (models loaded, cache state). Never behind the API key."""
from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, PlainTextResponse

from service.registry import Registry
from service.routes.deps import RegistryDep, StoreDep
from service.schemas import Readiness

router = APIRouter(tags=["health"])


@router.get("/healthz", response_class=PlainTextResponse)
async def healthz() -> PlainTextResponse:
    """The process is alive. Cheap: touches nothing."""
    return PlainTextResponse("ok")


@router.get("/readyz", response_model=Readiness,
            responses={503: {"model": Readiness, "description": "Not ready: `reason` says why"}})
async def readyz(registry: RegistryDep, store: StoreDep) -> JSONResponse:
    """200 when every model found under the artifacts folder is loaded, else 503 with a `reason` (no model
    folder found, or which bundles were refused). `cache` is "up", "degraded" (Redis unreachable: answers are
    computed, not fetched) or "in-process" (no Redis configured)."""
    cache = await run_in_threadpool(store.check)
    models = {name: model.version for name, model in registry.models.items()}
    body = {"status": "ready", "models": models, "failed": registry.failed, "cache": cache}
    reason = _not_ready(registry, models)
    if reason is None:
        return JSONResponse(body)
    return JSONResponse({**body, "status": "not ready", "reason": reason}, status_code=503)


def _not_ready(registry: Registry, models: dict[str, str]) -> str | None:
    """Why the service is not ready, or None when it is."""
    if registry.failed:
        return "bundles refused: " + "; ".join(f"{name}: {error}" for name, error in registry.failed.items())
    if not models:
        return registry.no_models or "no model is loaded yet"
    return None
