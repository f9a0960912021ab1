"""Add news to a running model: tokenize titles with the bundle's tokenizer, encode, append to the catalog."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from service.cache import Store, to_bytes
from service.config import Settings
from service.errors import unprocessable
from service.model import ServedModel


def add_items(model: ServedModel, items: Sequence[dict[str, Any]], store: Store, settings: Settings) -> dict:
    """Encode `items` ({"item_id", "title", "category"?}) and make them rankable at once (new ids get new rows,
    known ids get their vector replaced). Raises 422 for a model whose items are learned ids."""
    if model.tokenizer is None:
        raise unprocessable("model", f"model {model.name!r} has no tokenizer: its items are ids learned in "
                                     "training and cannot be added while serving")
    inputs = set(model.graphs["item_encoder"].inputs)
    if inputs != set(model.tokenizer.input_names):
        raise unprocessable("model", f"model {model.name!r} needs item inputs {sorted(inputs)}, not just titles")
    ids = [item["item_id"] for item in items]
    vectors = model.encode_items(model.tokenizer.item_inputs([item["title"] for item in items]), settings.encode_batch)
    added, updated = model.catalog.upsert(ids, vectors)
    store.set_many([(model.keys.item(i), to_bytes(v)) for i, v in zip(ids, vectors)], settings.item_ttl_s or None)
    for item in items:
        model.added[item["item_id"]] = {"title": item["title"], "category": item.get("category")}
    return {"model": model.name, "version": model.version, "added": added, "updated": updated}
