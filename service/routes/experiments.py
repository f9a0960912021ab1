"""GET /experiments: what is served and why the file was last refused; GET /experiments/{name}: an experiment's
arms and its readout from the per-arm counters (Redis when set)."""
from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter, Path, Request
from starlette.concurrency import run_in_threadpool

from service.errors import ServiceError, documented
from service.experiments.config import INTERLEAVED
from service.experiments.readout import interleaving, readout
from service.experiments.shadow_readout import from_counts
from service.responses import FastJSON
from service.routes.deps import RegistryDep

router = APIRouter(tags=["experiments"], responses=documented(401))


@router.get("/experiments", response_class=FastJSON)
async def experiments(registry: RegistryDep) -> FastJSON:
    """The experiments served (RECSERVE_EXPERIMENTS), each arm with the model and version it answers with, its
    weight and whether it is the control; `refused`: why the file was last refused (the previous configuration
    then serves), else null."""
    held = registry.experiments
    return FastJSON({"file": str(held.path) if held.path else None, "refused": held.error,
                     "experiments": {name: arms(served) for name, served in held.served.items()}})


def arms(served) -> dict[str, dict]:
    """Arm name -> the model and version serving it, the version the file pins (or LATEST), weight, control;
    a shadow arm adds `shadow` (true) and its `sample`, a canary arm its limits (`canary`) and
    `serving_weight`, its share of assignment now (0 once rolled back)."""
    return {arm.name: {"model": model.name, "version": model.version, "pinned": arm.version, "weight": arm.weight,
                       "control": arm.control, **({"shadow": True, "sample": arm.sample} if arm.shadow else {}),
                       **({"canary": asdict(arm.canary), "serving_weight": served.weight(i)} if arm.canary else {})}
            for i, (arm, model) in enumerate(zip(served.experiment.arms, served.models))}


@router.get("/experiments/{name}", response_class=FastJSON, responses=documented(404, 422, 503))
async def experiment(request: Request, registry: RegistryDep,
                     name: str = Path(min_length=1, max_length=64)) -> FastJSON:
    """Per arm: the model and version it serves, its weight, impressions, attributed clicks, CTR with a 95%
    Wilson interval, and the lift against the control arm (CTR ratio - 1) with its 95% interval. Counted
    since the experiment's counters began: with Redis by every worker and replica, else by this process. A
    shadow arm (no impressions: it answers nobody) has `shadow_readout`: its jobs scored, errors, jobs
    dropped, mean overlap@10 and Kendall tau against the live answers, and latency (ms) of its scoring and of
    the live ranking of the same requests.

    An interleaved experiment adds `interleaving`: its impressions; per arm the clicked items it placed and the
    impressions it won; for the non-control arm (`arm`) its wins, losses and ties against the control, the share
    of wins among decided impressions with its 95% interval, and the two-sided sign test's p-value."""
    served = registry.experiments.get(name)
    if served is None:
        raise ServiceError(404, f"unknown experiment {name!r}; served: {sorted(registry.experiments.served)}",
                           "name")
    feedback = request.app.state.ranker.feedback
    if feedback is None:
        raise ServiceError(503, "no feedback recorder: experiments are not counted")
    interleave = served.experiment.interleave
    try:
        counts = await run_in_threadpool(feedback.counts.read, name)
        outcomes = await run_in_threadpool(feedback.counts.wins.read, name) if interleave else None
    except Exception as exc:  # noqa: BLE001 - Redis down: say so rather than a 500
        raise ServiceError(503, f"cannot read the experiment's counters: {type(exc).__name__}: {exc}") from None
    names, control = [a.name for a in served.experiment.arms], served.experiment.control.name
    body = readout(name, control, names, counts)
    body["arms"] = {arm: {**about, **body["arms"][arm]} for arm, about in arms(served).items()}
    for arm in served.experiment.arms:
        if arm.shadow:  # its rankings against the live ones: overlap, rank correlation, latency
            body["arms"][arm.name]["shadow_readout"] = from_counts(counts.get(arm.name, {}), arm.sample)
    if interleave:
        shown = counts.get(INTERLEAVED, {}).get("impressions", 0)
        body["interleaving"] = interleaving(control, names, shown, outcomes)
    return FastJSON(body)
