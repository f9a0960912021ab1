"""GET /experiments/{name}: an experiment's arms and its readout from the per-arm counters (Redis when set)."""
from __future__ import annotations

from fastapi import APIRouter, Path, Request
from starlette.concurrency import run_in_threadpool

from service.errors import ServiceError, documented
from service.experiments.readout import readout
from service.responses import FastJSON
from service.routes.deps import RegistryDep

router = APIRouter(tags=["experiments"], responses=documented(401))


@router.get("/experiments/{name}", response_class=FastJSON, responses=documented(404, 422, 503))
async def experiment(request: Request, registry: RegistryDep,
                     name: str = Path(min_length=1, max_length=64)) -> FastJSON:
    """Per arm: the model and version it serves, its weight, impressions, attributed clicks, CTR with a 95%
    Wilson interval, and the lift against the control arm (CTR ratio - 1) with its 95% interval. Counted
    since the experiment's counters began: with Redis by every worker and replica, else by this process."""
    served = registry.experiments.get(name)
    if served is None:
        raise ServiceError(404, f"unknown experiment {name!r}; served: {sorted(registry.experiments.served)}",
                           "name")
    feedback = request.app.state.ranker.feedback
    if feedback is None:
        raise ServiceError(503, "no feedback recorder: experiments are not counted")
    try:
        counts = await run_in_threadpool(feedback.counts.read, name)
    except Exception as exc:  # noqa: BLE001 - Redis down: say so rather than a 500
        raise ServiceError(503, f"cannot read the experiment's counters: {type(exc).__name__}: {exc}") from None
    arms = served.experiment.arms
    body = readout(name, served.experiment.control.name, [a.name for a in arms], counts)
    for arm, model in zip(arms, served.models):
        body["arms"][arm.name] = {"model": model.name, "version": model.version, "pinned": arm.version,
                                  "weight": arm.weight, **body["arms"][arm.name]}
    return FastJSON(body)
