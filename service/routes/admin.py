"""POST /admin/reload: load the newest bundles and swap them in (SIGHUP does the same)."""
from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse

from service.errors import ADMIN_MEANINGS, documented
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
