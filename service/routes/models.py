"""GET /models: what is being served."""
from __future__ import annotations

from fastapi import APIRouter, Request

from service.errors import documented
from service.routes.deps import RegistryDep, SettingsDep
from service.schemas import ModelInfo

router = APIRouter(tags=["models"], responses=documented(401))


@router.get("/models", response_model=list[ModelInfo])
async def list_models(request: Request, registry: RegistryDep, settings: SettingsDep) -> list[ModelInfo]:
    """Every served model: version, catalog size, vector dimension, execution provider, training metrics,
    what its scores mean (`score`: "raw" relevance or "probability") and how /recommend finds the top k
    (`retrieval`: index or exact scan, why, and the index's recall measured at export). A model serving an
    older version because the one LATEST names was refused says so: `fallback_from` (LATEST's version) and
    `fallback_reason`. `rolled_back`: canary arms answering with the model that a guardrail rolled back."""
    rolled = rollbacks(request.app.state, registry)
    infos = []
    for name, model in sorted(registry.models.items()):
        m, fallback = model.bundle.manifest, registry.fallbacks.get(name)
        infos.append(ModelInfo(
            name=name, kind=model.bundle.kind, version=model.version, items=model.catalog.size,
            dimension=model.bundle.dim, scorer=model.bundle.scorer, score=m.get("score", "raw"),
            user_input=model.bundle.user_input, max_history=model.max_history,
            provider=model.graphs["user_encoder"].provider, metrics=m.get("metrics", {}),
            created_at=m.get("created_at"), retrieval=model.retrieval(settings.retrieval_min_items),
            fallback=model.bundle.fallback_kind, fallback_from=fallback.latest if fallback else None,
            fallback_reason=fallback.reason if fallback else None,
            rolled_back={label: why for label, (arm_model, why) in rolled.items() if arm_model == name}))
    return infos


def rollbacks(state, registry) -> dict[str, tuple[str, str]]:
    """"<experiment>/<arm>" -> (the arm's model, why) of every canary arm rolled back (canary.py)."""
    canaries = getattr(state, "canaries", None)
    found = {}
    for name, arms in (canaries.rolled_back if canaries is not None else {}).items():
        served = registry.experiments.get(name)
        models = {a.name: a.model for a in served.experiment.arms} if served is not None else {}
        for arm, entry in arms.items():
            found[f"{name}/{arm}"] = (models.get(arm, ""), entry.get("reason", ""))
    return found
