"""POST /items: add news to a running content-based model."""
from __future__ import annotations

import anyio.to_thread
from anyio import CapacityLimiter
from fastapi import APIRouter, Request

from service.errors import documented, unprocessable
from service.items import apply, check, check_room, encode, raw_inputs
from service.responses import FastJSON
from service.routes.deps import RegistryDep, SettingsDep, served_model
from service.schemas import ItemsRequest, ItemsResponse

router = APIRouter(tags=["catalog"], responses=documented(401, 413))

# /items encodings running at once in one worker process; more wait their turn without holding a thread (or
# the event loop). Two, so one request's tokenising overlaps another's item encoder.
ENCODERS = 2


def encoders(request: Request) -> CapacityLimiter:
    """The app's limiter of /items encodings (made on first use, on the event loop of the app)."""
    state = request.app.state
    limiter = getattr(state, "items_encoders", None)
    if limiter is None:
        limiter = state.items_encoders = CapacityLimiter(ENCODERS)
    return limiter


@router.post("/items", response_model=ItemsResponse, response_class=FastJSON,
             responses=documented(404, 422, 429, 503))
async def post_items(body: ItemsRequest, request: Request, registry: RegistryDep,
                     settings: SettingsDep) -> FastJSON:
    """Encode new items from their titles with the bundle's tokenizer and item encoder.

    They join the catalog at once (rankable and recommendable); an id already known gets its vector
    replaced. Only models with a tokenizer (NRMS) accept this; others answer 422. A model keeps at most
    RECSERVE_MAX_ADDED_ITEMS added items (an update of one does not count again): a request past that
    answers 429 and adds nothing.

    Titles are tokenised and encoded in a worker thread, so other requests are answered meanwhile.
    """
    model = served_model(request, registry, body.model)
    if len(body.items) > settings.max_new_items:
        raise unprocessable("items", f"{len(body.items)} items exceed the limit of {settings.max_new_items}")
    items = [item.model_dump() for item in body.items]
    check(model, items, settings)
    # Off the event loop: 1,000 titles kept /healthz waiting up to 763 ms when encoded on it (issue #19).
    vectors = await anyio.to_thread.run_sync(encode, model, items, settings, limiter=encoders(request))
    # Back on the loop, where every apply runs, one at a time. Check again: other requests may have added
    # items while this one was encoding.
    check_room(model, [item["item_id"] for item in items], settings)
    if registry.state is not None:  # stored for every replica first: a 503 here leaves nothing half-added
        await anyio.to_thread.run_sync(registry.state.add_items, model.name, raw_inputs(items))
    answer = apply(model, items, vectors)
    feedback = request.app.state.ranker.feedback
    if feedback is not None:  # the raw inputs, so an export can write news.tsv rows for them
        feedback.added(model.name, items)
    return FastJSON(answer)
