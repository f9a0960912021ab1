"""GET /healthz (alive) and GET /readyz (models loaded, cache state). Never behind the API key."""
from __future__ import annotations

from dataclasses import asdict

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
    folder found, or which bundles were refused). A model serving an older version because the one LATEST
    names was refused at start-up (`fallbacks`) still serves: 200, but `status` "degraded" with a `reason`.
    `cache` is "up", "degraded" (Redis unreachable: answers are computed, not fetched) or "in-process" (no Redis
    configured)."""
    cache = await run_in_threadpool(store.check)
    served = registry.models
    models = {name: model.version for name, model in served.items()}
    fallbacks = {name: asdict(f) for name, f in registry.fallbacks.items() if name in served}
    body = {"status": "ready", "models": models, "failed": registry.failed, "fallbacks": fallbacks, "cache": cache}
    reason = _not_ready(registry, models)
    older = "; ".join(f"{name} serves {f['serving']}: LATEST's {f['latest'] or '(unreadable)'} was refused: "
                      f"{f['reason']}" for name, f in fallbacks.items())
    if reason is None and older:
        return JSONResponse({**body, "status": "degraded", "reason": f"serving older versions: {older}"})
    if reason is None:
        return JSONResponse(body)
    reason += f"; serving older versions: {older}" if older else ""
    return JSONResponse({**body, "status": "not ready", "reason": reason}, status_code=503)


def _not_ready(registry: Registry, models: dict[str, str]) -> str | None:
    """Why the service is not ready, or None when it is."""
    if registry.failed:
        return "bundles refused: " + "; ".join(f"{name}: {error}" for name, error in registry.failed.items())
    if not models:
        return registry.no_models or "no model is loaded yet"
    return None
