"""Shared dependencies as `Annotated` aliases. All are `async def`: no thread-pool hop on the hot path."""
from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect

from service.cache import Store
from service.config import Settings
from service.errors import ServiceError
from service.experiments.active import Choice
from service.metrics import Metrics
from service.model import ServedModel
from service.ranking import Ranker
from service.registry import Registry


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_registry(request: Request) -> Registry:
    return request.app.state.registry


async def get_ranker(request: Request) -> Ranker:
    return request.app.state.ranker


async def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


async def get_store(request: Request) -> Store:
    return request.app.state.store


SettingsDep = Annotated[Settings, Depends(get_settings)]
RegistryDep = Annotated[Registry, Depends(get_registry)]
RankerDep = Annotated[Ranker, Depends(get_ranker)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
StoreDep = Annotated[Store, Depends(get_store)]


def served_model(request: Request, registry: Registry, name: str) -> ServedModel:
    """The model called `name`: 503 while nothing is loaded, 404 when no such model is served."""
    model = registry.models.get(name)
    if model is not None:
        request.state.model = name  # a metrics label: only served names, so a client cannot grow the series
        return model
    if not registry.models:
        raise ServiceError(503, "no model is loaded yet; see GET /readyz")
    raise ServiceError(404, f"unknown model {name!r}; served: {sorted(registry.models)}", "model")


def ranking_model(request: Request, registry: Registry, name: str, user_id: str | None,
                  answer_id: Callable[[Request], str]) -> tuple[ServedModel, Choice | None]:
    """The model that answers /rank or /recommend for `name`: a served model (one dict lookup, as before), or
    the arm of experiment `name` this user (else this request, whose id `answer_id` makes) is assigned to."""
    model = registry.models.get(name)
    if model is not None:
        request.state.model = name
        return model, None
    served = registry.experiments.get(name)
    if served is None:
        return served_model(request, registry, name), None  # raises the 503 or the 404
    model, choice = served.answer(user_id, answer_id(request))
    request.state.model = model.name
    return model, choice


Body = TypeVar("Body", bound=BaseModel)


async def parse_body(request: Request, schema: type[Body]) -> Body:
    """The request body as `schema`, parsed and validated in one pass by pydantic-core.

    The hot routes take their body this way rather than as a FastAPI body parameter, which decodes with
    `json.loads` and then validates the Python objects (~40 us more per /rank). Errors are the same 422.
    """
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        # JSON only, as FastAPI's body parameters: a form or text/plain POST (which a browser sends across
        # sites without a CORS preflight) is refused.
        raise RequestValidationError([{"type": "content_type", "loc": ("body",),
                                       "msg": "send a JSON body with Content-Type: application/json"}])
    try:
        raw = await request.body()
    except ClientDisconnect:
        raise ServiceError(400, "the client disconnected before sending the whole body") from None
    if not raw:
        raise RequestValidationError([{"type": "missing", "loc": ("body",), "msg": "Field required"}])
    try:
        return schema.model_validate_json(raw)
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from None


def documented_body(schema: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` that documents a body read by `parse_body` (the schemas have no nested models); the
    route documents its 422 with the other errors (`service.errors.documented`)."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema.model_json_schema()}}}}
