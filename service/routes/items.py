"""POST /items: add news to a running content-based model."""
from __future__ import annotations

from fastapi import APIRouter, Request

from service.errors import documented, unprocessable
from service.items import add_items
from service.responses import FastJSON
from service.routes.deps import Authorized, RegistryDep, SettingsDep, StoreDep, served_model
from service.schemas import ItemsRequest, ItemsResponse

router = APIRouter(tags=["catalog"], dependencies=Authorized, responses=documented(401))


@router.post("/items", response_model=ItemsResponse, response_class=FastJSON,
             responses=documented(404, 422, 429, 503))
async def post_items(body: ItemsRequest, request: Request, registry: RegistryDep, store: StoreDep,
                     settings: SettingsDep) -> FastJSON:
    """Encode new items from their titles with the bundle's tokenizer and item encoder.

    They join the catalog at once (rankable and recommendable); an id already known gets its vector
    replaced. Only models with a tokenizer (NRMS) accept this; others answer 422. A model keeps at most
    RECSERVE_MAX_ADDED_ITEMS added items (an update of one does not count again): a request past that
    answers 429 and adds nothing.
    """
    model = served_model(request, registry, body.model)
    if len(body.items) > settings.max_new_items:
        raise unprocessable("items", f"{len(body.items)} items exceed the limit of {settings.max_new_items}")
    return FastJSON(add_items(model, [item.model_dump() for item in body.items], store, settings))
