"""POST /admin/reload: load the newest bundles and swap them in (SIGHUP does the same). POST
/admin/experiments/{name}/arms/{arm}/restore: serve a rolled-back canary arm again."""
from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter, Path, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse

from service.errors import ADMIN_MEANINGS, ServiceError, documented
from service.routes.deps import RegistryDep
from service.schemas import ReloadRefused, ReloadResponse

# The admin key or the loopback rule, checked by `service.access`.
router = APIRouter(tags=["admin"], responses=documented(401, 403, meanings=ADMIN_MEANINGS))


@router.post("/admin/reload", response_model=ReloadResponse,
             responses={409: {"model": ReloadRefused, "description": "A bundle was refused"}})
async def reload(registry: RegistryDep) -> JSONResponse:
    """Load the LATEST bundle of every model again and swap them in atomically; requests in flight finish
    on the models they started with. A bundle that fails verification (hash mismatch, unreadable file) is
    refused, the model keeps serving its previous version, and the answer is 409 naming the file. The
    experiments file (RECSERVE_EXPERIMENTS) is read again too; a bad one is refused (409, the previous one
    keeps serving)."""
    report = asdict(await run_in_threadpool(registry.load))
    if report["refused"] or report["experiments_refused"]:
        detail = "; ".join([*(f"{name}: {error}" for name, error in report["refused"].items()),
                            *([f"experiments: {report['experiments_refused']}"] if report["experiments_refused"]
                              else [])])
        return JSONResponse({"detail": f"refused: {detail}", "field": None, **report}, status_code=409)
    return JSONResponse(report)


@router.post("/admin/experiments/{name}/arms/{arm}/restore", responses=documented(404, 422))
async def restore(request: Request, registry: RegistryDep, name: str = Path(min_length=1, max_length=64),
                  arm: str = Path(min_length=1, max_length=64)) -> JSONResponse:
    """Serve a canary arm that a guardrail rolled back at its configured weight again, on every worker and
    replica within RECSERVE_CANARY_CHECK_S; its guardrail window starts afresh. `restored` is false when the
    arm was not rolled back. Promotion stays a configuration change (raise its weight, or make it the control)."""
    served = registry.experiments.get(name)
    if served is None:
        raise ServiceError(404, f"unknown experiment {name!r}; served: {sorted(registry.experiments.served)}", "name")
    canaries = [a.name for a in served.experiment.arms if a.canary]
    if arm not in canaries:
        raise ServiceError(404, f"experiment {name!r} has no canary arm {arm!r} (canary arms: {canaries})", "arm")
    restored = await run_in_threadpool(request.app.state.canaries.restore, name, arm)
    return JSONResponse({"experiment": name, "arm": arm, "restored": restored})
