"""Items other replicas added through /items, made rankable here within a second.

Each worker polls, every RECSERVE_STATE_POLL_S (0.25 s), one small counter per model that takes titles (it
changes with every write of added items: `RedisState.added_seq`), off the request path: a request pays
nothing for it. When the counter moved, the worker reads the stored raw inputs, encodes (in a thread) those
it has not applied as they are, and applies them as its own /items would. A worker's own writes come back
too, and find nothing left to do.
"""
from __future__ import annotations

import asyncio
import logging

import anyio.to_thread

from service.config import Settings
from service.items import apply, changed_items, encode
from service.model import ServedModel
from service.registry import Registry

log = logging.getLogger("recserve.sync")


async def follow_added_items(registry: Registry, settings: Settings) -> None:
    """Run until cancelled (the app's lifespan starts it when Redis holds the state)."""
    seen: dict[tuple[str, str], int] = {}  # (model, version) -> the counter last applied
    while True:
        await asyncio.sleep(settings.state_poll_s)
        if registry.state.copies is not None:  # keeps an idle worker's subscription read
            await anyio.to_thread.run_sync(registry.state.copies.drain)
        # the versions experiments pin beside LATEST too: an arm must rank what the others can
        for model in [*registry.models.values(), *registry.experiments.pinned.values()]:
            if model.tokenizer is None:
                continue
            try:
                await catch_up(registry, model, seen, settings)
            except Exception:  # noqa: BLE001 - a bad round must not stop the loop; the next one retries
                log.exception("could not apply the items other replicas added to %s", model.name)


async def catch_up(registry: Registry, model: ServedModel, seen: dict[tuple[str, str], int],
                   settings: Settings) -> int:
    """Apply what changed in `model`'s stored added items since the last round; returns how many."""
    state, key = registry.state, (model.name, model.version)
    seq = await anyio.to_thread.run_sync(state.added_seq, model.name)
    if seq is None or seen.get(key) == seq:  # Redis unreachable (retry next round), or nothing new
        return 0
    todo = changed_items(model, await anyio.to_thread.run_sync(state.added_items, model.name))
    if todo:
        vectors = await anyio.to_thread.run_sync(encode, model, todo, settings)
        apply(model, todo, vectors)  # on the loop, as the route applies
        log.info("%s: applied %d item(s) added by other replicas", model.name, len(todo))
    seen[key] = seq
    return len(todo)
