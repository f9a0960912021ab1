"""GET /models: what is being served."""
from __future__ import annotations

from fastapi import APIRouter

from service.errors import documented
from service.routes.deps import RegistryDep, SettingsDep
from service.schemas import ModelInfo

router = APIRouter(tags=["models"], responses=documented(401))


@router.get("/models", response_model=list[ModelInfo])
async def list_models(registry: RegistryDep, settings: SettingsDep) -> list[ModelInfo]:
    """Every served model: version, catalog size, vector dimension, execution provider, training metrics,
    what its scores mean (`score`: "raw" relevance or "probability") and how /recommend finds the top k
    (`retrieval`: index or exact scan, why, and the index's recall measured at export). A model serving an
    older version because the one LATEST names was refused says so: `fallback_from` (LATEST's version) and
    `fallback_reason`."""
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
            fallback_reason=fallback.reason if fallback else None))
    return infos
