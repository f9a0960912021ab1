"""What clients write: clicks appended to users' histories and items added to a catalog. State, not cache.

With Redis configured (`RedisState`) every worker and replica reads and writes the same state, so they
agree, and it outlives restarts and bundle versions (keys name the model, never a version). Without Redis
one process keeps it in memory (`service/events.py` UserEvents, the registry's added items). State keys carry no TTL
(an operator may set one for inactive users' events), so an eviction policy of `volatile-*` never drops
them, while the vector cache's keys, which all carry TTLs, stay evictable.

Reads fail open (a user's runtime clicks are missing while Redis is down; the bundle's history still
serves); writes that cannot be stored raise `StateUnavailable`, which the routes answer with 503: a click
is data, never dropped behind a 200.

Keys (see service/cache.py for the cache's):
    events of a user : `<prefix>:{u.<user digest>}:<model>:events`   a list, oldest first, capped
    added items      : `<prefix>:{a.<model digest>}:<model>:added`   a hash item_id -> JSON raw input
    their counter    : `<prefix>:{a.<model digest>}:<model>:added-seq` bumped with every write
    announcements    : channel `<prefix>:state-changes`, the key of every events list written (service/tracking.py)
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

from service.cache import REDIS_ERRORS, RedisStore, digest
from service.errors import ServiceError
from service.tracking import MISSING, TrackedCopies

log = logging.getLogger("recserve.state")


class StateUnavailable(ServiceError):
    """A write of client data that could not be stored: 503, and nothing was written."""

    def __init__(self, what: str, cause: Exception):
        super().__init__(503, f"could not store {what}: the state store (Redis) is unreachable ({cause}); "
                              "nothing was written, retry later")


class RedisState:
    """State in Redis (or a Redis Cluster: each call touches one hash tag), through the cache's client and its
    circuit breaker: while Redis is down, reads answer their default and writes refuse at once, without
    waiting out a timeout per request. `events_ttl_s` > 0 expires a user's events after that long without a
    new one. Events read are kept in process (`copies`, at most `copies_size` users, `copies_max_age_s` each)
    until a write announces their key; `copies_size` 0 reads Redis every time."""

    def __init__(self, store: RedisStore, prefix: str, events_ttl_s: int = 0, copies_size: int = 0,
                 copies_max_age_s: float = 60.0):
        self.store, self.prefix, self.events_ttl_s = store, prefix, events_ttl_s
        self.channel = f"{prefix}:state-changes"
        self.copies = TrackedCopies(store, self.channel, copies_size, copies_max_age_s) if copies_size else None

    def _events_key(self, model: str, user_id: str) -> str:
        return f"{self.prefix}:{{u.{digest(user_id)}}}:{model}:events"

    def _added_key(self, model: str, suffix: str = "added") -> str:
        return f"{self.prefix}:{{a.{digest(model)}}}:{model}:{suffix}"

    def _read(self, fn: Callable[[Any], Any], default: Any) -> Any:
        """`fn(client)`, or `default` when Redis cannot answer (fail open)."""
        return self.store.call(lambda: fn(self.store.client), default)

    def _write(self, fn: Callable[[Any], Any], what: str) -> Any:
        """`fn(client)`; StateUnavailable (503) naming `what` when Redis cannot take it."""
        try:
            return self.store.attempt(lambda: fn(self.store.client))
        except REDIS_ERRORS as exc:
            raise StateUnavailable(what, exc) from exc

    def events(self, model: str, user_id: str) -> list[str] | None:
        key = self._events_key(model, user_id)
        if self.copies is not None:
            kept = self.copies.get(key)
            if kept is not MISSING:
                return kept
            epoch = self.copies.epoch()
        found = self._read(lambda client: client.lrange(key, 0, -1), MISSING)
        if found is MISSING:  # Redis cannot answer: the bundle's history serves, nothing is kept
            return None
        events = [item.decode() for item in found] if found else None
        if self.copies is not None:
            self.copies.put(key, events, epoch)
        return events

    def append_events(self, model: str, user_id: str, items: Sequence[str], cap: int) -> int:
        key = self._events_key(model, user_id)

        def append(client) -> int:
            pipe = client.pipeline(transaction=True)  # one key: atomic on a cluster too
            pipe.rpush(key, *items)
            pipe.ltrim(key, -cap, -1)
            if self.events_ttl_s:
                pipe.expire(key, self.events_ttl_s)
            pipe.llen(key)
            if not self.store.cluster:  # announced in the same transaction; a cluster's PUBLISH has no slot
                pipe.publish(self.channel, key)
            length = int(pipe.execute()[3 if self.events_ttl_s else 2])
            if self.store.cluster:
                try:
                    self._announce_on_cluster(client, key)
                except REDIS_ERRORS as exc:  # stored all the same; copies elsewhere age out in copies_max_age_s
                    log.warning("could not announce the new events of %s: %s", key, exc)
            return length

        try:
            return self._write(append, f"the events of user {user_id!r}")
        finally:
            if self.copies is not None:
                self.copies.forget(key)

    def _announce_on_cluster(self, client, key: str) -> None:
        """PUBLISH on the node the channel's subscribers listen to (elsewhere it reaches them a cluster-bus hop
        later), in a MULTI as on a single Redis: Redis then writes the message to the subscribers before the
        reply to the writer (see service/tracking.py)."""
        node = client.get_redis_connection(client.get_node_from_key(self.channel))
        pipe = node.pipeline(transaction=True)
        pipe.publish(self.channel, key)
        pipe.execute()

    def added_items(self, model: str) -> dict[str, dict[str, Any]]:
        raw = self._read(lambda client: client.hgetall(self._added_key(model)), {})
        return {item.decode(): json.loads(value) for item, value in raw.items()}

    def add_items(self, model: str, items: dict[str, dict[str, Any]]) -> None:
        def add(client) -> None:
            pipe = client.pipeline(transaction=True)  # both keys share the model's tag
            pipe.hset(self._added_key(model), mapping={i: json.dumps(v, ensure_ascii=False) for i, v in items.items()})
            pipe.incr(self._added_key(model, "added-seq"))
            pipe.execute()

        self._write(add, f"{len(items)} added item(s) of model {model!r}")

    def added_seq(self, model: str) -> int | None:
        unread = object()
        value = self._read(lambda client: client.get(self._added_key(model, "added-seq")), unread)
        if value is unread:
            return None
        return int(value) if value is not None else 0
