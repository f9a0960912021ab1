"""Add news to a running model: tokenize titles with the bundle's tokenizer, encode, append to the catalog.

Three steps, so that a route can run the slow middle one in a worker thread: `check` (the model takes titles
and has room), `encode` (tokenizer and item encoder, after growing the catalog under its lock if needed) and
`apply` (catalog rows and `model.added`; never two at once for one model: the route applies on the
event loop, a reload before the model is served)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from service.config import Settings
from service.errors import ServiceError, unprocessable
from service.model import ServedModel


def check(model: ServedModel, items: Sequence[dict[str, Any]], settings: Settings) -> None:
    """422 for a model whose items are learned ids (or need more than titles); 429 when the new ids would take
    the model past RECSERVE_MAX_ADDED_ITEMS."""
    if model.tokenizer is None:
        raise unprocessable("model", f"model {model.name!r} has no tokenizer: its items are ids learned in "
                                     "training and cannot be added while serving")
    inputs = set(model.graphs["item_encoder"].inputs)
    if inputs != set(model.tokenizer.input_names):
        raise unprocessable("model", f"model {model.name!r} needs item inputs {sorted(inputs)}, not just titles")
    check_room(model, [item["item_id"] for item in items], settings)


def check_room(model: ServedModel, ids: Sequence[str], settings: Settings) -> None:
    """429 when the ids not yet in `model.added` would take it past `settings.max_added_items`. An id posted
    before (an update) does not count again."""
    kept, limit = len(model.added), settings.max_added_items
    new = sum(1 for item in dict.fromkeys(ids) if item not in model.added)
    if new and kept + new > limit:
        raise ServiceError(429, f"items: model {model.name!r} keeps {kept} added items (distinct ids posted to "
                                f"/items); the {new} new in this request would pass the limit of {limit} per "
                                f"model (RECSERVE_MAX_ADDED_ITEMS): nothing was added", "items")


def encode(model: ServedModel, items: Sequence[dict[str, Any]], settings: Settings) -> np.ndarray:
    """Item vectors [N, D] of the items' titles, after making room in the catalog for the new ids (growing it
    copies the matrix). Safe in a worker thread: it reads only the tokenizer and the item encoder, and the
    catalog grows under its lock (onnxruntime releases the GIL while it computes)."""
    model.catalog.reserve(sum(1 for item in {i["item_id"] for i in items} if item not in model.catalog))
    return model.encode_items(model.tokenizer.item_inputs([item["title"] for item in items]), settings.encode_batch)


def apply(model: ServedModel, items: Sequence[dict[str, Any]], vectors: np.ndarray) -> dict:
    """Make encoded items rankable at once: new ids get new rows, known ids get their vector replaced. Keeps
    each item's title and category (and nothing else of it) in `model.added`, to re-encode after a reload."""
    ids = [item["item_id"] for item in items]
    added, updated = model.catalog.upsert(ids, vectors)
    model.added.update(raw_inputs(items))
    return {"model": model.name, "version": model.version, "added": added, "updated": updated}


def raw_inputs(items: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """What is kept of each added item to re-encode it later (a reload, another replica): title and category."""
    return {item["item_id"]: {"title": item["title"], "category": item.get("category")} for item in items}


def changed_items(model: ServedModel, stored: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The stored added items this model has not applied as they are now (new ids, or new titles)."""
    return [raw | {"item_id": item} for item, raw in stored.items() if model.added.get(item) != raw]


def add_items(model: ServedModel, items: Sequence[dict[str, Any]], settings: Settings) -> dict:
    """Check, encode and apply `items` ({"item_id", "title", "category"?}) in the calling thread."""
    check(model, items, settings)
    return apply(model, items, encode(model, items, settings))
