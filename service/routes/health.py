"""GET /healthz (alive) and GET /readyz (models loaded, cache state). Never behind the API key."""
from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, PlainTextResponse

from service.cache import RedisStore, Store
from service.registry import Registry
from service.routes.deps import RegistryDep, SettingsDep, StoreDep
from service.routes.models import rollbacks
from service.schemas import Readiness

router = APIRouter(tags=["health"])


@router.get("/healthz", response_class=PlainTextResponse)
async def healthz() -> PlainTextResponse:
    """The process is alive. Cheap: touches nothing."""
    return PlainTextResponse("ok")


@router.get("/readyz", response_model=Readiness,
            responses={503: {"model": Readiness, "description": "Not ready: `reason` says why"}})
async def readyz(request: Request, registry: RegistryDep, store: StoreDep, settings: SettingsDep) -> JSONResponse:
    """200 when every model found under the artifacts folder is loaded, else 503 with a `reason` (no model
    folder found, or which bundles were refused). A model serving an older version because the one LATEST
    names was refused at start-up (`fallbacks`) still serves: 200, but `status` "degraded" with a `reason`.
    `cache` is "up", "degraded" (Redis unreachable: answers are computed, not fetched, and clicks are refused)
    or "in-process" (no Redis configured). A configured Redis that has not answered since start-up keeps the
    replica not ready (503) while RECSERVE_WAIT_FOR_REDIS is true (the default); one that stopped answering
    later leaves it ready, "degraded", with the reason. `rollbacks`: canary arms a guardrail rolled back (the
    replica stays ready: the other arms serve their users)."""
    cache = await run_in_threadpool(store.check)
    served = registry.models
    models = {name: model.version for name, model in served.items()}
    fallbacks = {name: asdict(f) for name, f in registry.fallbacks.items() if name in served}
    body = {"status": "ready", "models": models, "failed": registry.failed, "fallbacks": fallbacks, "cache": cache}
    rolled = {label: why for label, (_, why) in rollbacks(request.app.state, registry).items()}
    if rolled:  # only then, so a body without experiments stays what it was
        body["rollbacks"] = rolled
    older = "; ".join(f"{name} serves {f['serving']}: LATEST's {f['latest'] or '(unreadable)'} was refused: "
                      f"{f['reason']}" for name, f in fallbacks.items())
    cache_reason, holds = _cache_problem(store, settings.wait_for_redis)
    reason = "; ".join(filter(None, [_not_ready(registry, models), cache_reason if holds else None]))
    notes = "; ".join(filter(None, [None if holds else cache_reason, f"serving older versions: {older}" if older
                                    else None]))
    if not reason and notes:
        return JSONResponse({**body, "status": "degraded", "reason": notes})
    if not reason:
        return JSONResponse(body)
    reason += f"; {notes}" if notes else ""
    return JSONResponse({**body, "status": "not ready", "reason": reason}, status_code=503)


def _cache_problem(store: Store, wait: bool) -> tuple[str | None, bool]:
    """What an unreachable Redis means for this replica: (the reason to report or None, whether it keeps the
    replica not ready: only before Redis ever answered, and only while `wait`). Clicks and added items are
    state only Redis keeps once it is configured, so a replica that never reached it must not get traffic; one
    that loses it later keeps serving reads (fail open), or every replica would leave the balancer at once."""
    if not isinstance(store, RedisStore) or not store.degraded:
        return None, False
    if wait and not store.answered:
        return (f"Redis at {store.url} has not answered since start-up: this replica could not keep clicks or "
                "added items (check RECSERVE_REDIS_URL; RECSERVE_WAIT_FOR_REDIS=false serves without it)"), True
    return (f"Redis at {store.url} does not answer: answers are computed without the cache and clicks or added "
            "items are refused (503) until it is back"), False


def _not_ready(registry: Registry, models: dict[str, str]) -> str | None:
    """Why the service is not ready, or None when it is."""
    if registry.failed:
        return "bundles refused: " + "; ".join(f"{name}: {error}" for name, error in registry.failed.items())
    if not models:
        return registry.no_models or "no model is loaded yet"
    return None
