"""The encoding cache: Redis when configured (with a circuit breaker), else an in-process LRU.

Keys (see `Keys`) are namespaced by model and bundle version, so a new bundle never reads an old vector, and
built so that no two different inputs share a key: item ids close the key after a fixed prefix, and every
other client-supplied part (user id, history) enters only through a digest of a length-unambiguous JSON
encoding, never a join. Hash tags spread keys over a Redis Cluster: a model version's item vectors (read
together when a catalog loads) share one tag; a user's vectors are tagged by the user, so users spread.
Values are raw little-endian float32 bytes.
"""
from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

log = logging.getLogger("recserve.cache")
CHUNK = 1000  # keys per MGET / per pipeline round


def digest(*parts: object) -> str:
    """A 128-bit hex digest of a JSON encoding of `parts`: injective on its inputs (JSON strings are quoted
    and escaped, lists delimited), so ["a\x1fb"] and ["a", "b"] never meet."""
    text = json.dumps(parts, ensure_ascii=False, separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


class Keys:
    """Key builder of one bundle version.

    item vector : `<prefix>:{<model version tag>}:item:<item_id>`   (a catalog's items on one slot)
    user vector : `<prefix>:{u.<user digest>}:<model>:user:<digest of model, version, user, history, generation>`
                  (anonymous requests are tagged by their history's digest: `{h.<digest>}`)
    """

    def __init__(self, prefix: str, model: str, version: str):
        self.prefix, self.model, self.version = prefix, model, version
        self.item_base = f"{prefix}:{{m.{digest(model, version)[:16]}}}:{model}:{version}:item:"

    def item(self, item_id: str) -> str:
        return self.item_base + item_id  # the id closes the key after a fixed prefix: injective

    def user_tag(self, user_id: str | None, history: Sequence[str]) -> str:
        """The hash tag of a user's keys: the user, or for an anonymous request the history it sends."""
        return f"{{u.{digest(user_id)}}}" if user_id is not None else f"{{h.{digest(list(history))}}}"

    def user(self, user_id: str | None, history: Sequence[str], generation: int = 0) -> str:
        """`generation` counts the catalog's replaced vectors (a news re-posted to /items) for models that
        encode users from item vectors: a new one changes every key, so no vector of the old items is served."""
        key = digest(self.model, self.version, user_id, list(history), generation)
        return f"{self.prefix}:{self.user_tag(user_id, history)}:{self.model}:user:{key}"


def to_bytes(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype="<f4").tobytes()


def from_bytes(raw: bytes | None, dim: int) -> np.ndarray | None:
    """The vector in `raw`, or None when absent or of the wrong size."""
    if raw is None or len(raw) != 4 * dim:
        return None
    return np.frombuffer(raw, dtype="<f4")


class Store(Protocol):
    """What every cache offers (LocalStore, RedisStore, NearCache). Reads never raise: a key that cannot be
    read is None (fail open); writes and deletes that cannot be done are dropped (it is a cache)."""

    @property
    def status(self) -> str:
        """"in-process", "up" or "degraded"."""

    def check(self) -> str:
        """The status after a probe of the backend (for /readyz)."""

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """The value of each key, or None where absent, expired or unreadable."""

    def set_many(self, pairs: Sequence[tuple[str, bytes]], ttl: int | None) -> None:
        """Store each (key, value), expiring after `ttl` seconds (None: never)."""

    def delete(self, keys: Sequence[str]) -> None:
        """Forget the keys."""


class LocalStore:
    """In-process LRU with per-key expiry; thread-safe."""

    status = "in-process"

    def __init__(self, size: int):
        self.size = size
        self._data: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        self._lock = threading.Lock()

    def check(self) -> str:
        return self.status

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        now, out = time.monotonic(), []
        with self._lock:
            for key in keys:
                entry = self._data.get(key)
                if entry is None or entry[1] < now:
                    out.append(None)
                else:
                    self._data.move_to_end(key)
                    out.append(entry[0])
        return out

    def set_many(self, pairs: Sequence[tuple[str, bytes]], ttl: int | None) -> None:
        deadline = time.monotonic() + ttl if ttl else float("inf")
        with self._lock:
            for key, value in pairs:
                self._data[key] = (value, deadline)
                self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)

    def delete(self, keys: Sequence[str]) -> None:
        with self._lock:
            for key in keys:
                self._data.pop(key, None)


class RedisStore:
    """Redis with short timeouts. A failure opens the circuit: calls return misses without touching Redis
    until `retry_s` has passed, then one call tries again, so the service recovers by itself."""

    def __init__(self, url: str, timeout_s: float, retry_s: float, on_degraded: Callable[[bool], None]):
        self.client = redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, retry=Retry(NoBackoff(), 0))
        self.retry_s = retry_s
        self._on_degraded = on_degraded
        self._down_until = 0.0
        self.degraded = False

    @property
    def status(self) -> str:
        return "degraded" if self.degraded else "up"

    def _call(self, fn: Callable[[], object], default: object) -> object:
        if self.degraded and time.monotonic() < self._down_until:
            return default
        try:
            result = fn()
        except (redis.RedisError, OSError) as exc:
            if not self.degraded:
                log.warning("redis unreachable, serving without it and retrying every %.1fs: %s", self.retry_s, exc)
            self.degraded, self._down_until = True, time.monotonic() + self.retry_s
            self._on_degraded(True)
            return default
        if self.degraded:
            log.warning("redis is back")
            self.degraded = False
            self._on_degraded(False)
        return result

    def check(self) -> str:
        """Ping (when the circuit allows) and report "up" or "degraded"."""
        self._call(self.client.ping, None)
        return self.status

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if len(keys) == 1:
            return [self._call(lambda: self.client.get(keys[0]), None)]

        out: list[bytes | None] = []
        for start in range(0, len(keys), 20 * CHUNK):
            part = keys[start:start + 20 * CHUNK]
            out.extend(self._call(lambda p=part: self._mget(p), None) or [None] * len(part))
        return out

    def _mget(self, keys: Sequence[str]) -> list[bytes | None]:
        pipe = self.client.pipeline(transaction=False)
        for start in range(0, len(keys), CHUNK):
            pipe.mget(keys[start:start + CHUNK])
        return [value for part in pipe.execute() for value in part]

    def set_many(self, pairs: Sequence[tuple[str, bytes]], ttl: int | None) -> None:
        for start in range(0, len(pairs), 20 * CHUNK):
            part = pairs[start:start + 20 * CHUNK]

            def write(part=part) -> None:
                pipe = self.client.pipeline(transaction=False)
                for key, value in part:
                    pipe.set(key, value, ex=ttl or None)
                pipe.execute()

            self._call(write, None)

    def delete(self, keys: Sequence[str]) -> None:
        if keys:
            self._call(lambda: self.client.delete(*keys), None)


class NearCache:
    """An in-process LRU in front of another store, for values that never change under their key.

    A user vector is a pure function of its key (bundle version, history and, for models that read item
    vectors, the catalog generation), so a copy kept in the process can never be stale: a new event or a
    replaced item vector makes a new key. Repeat users then skip the Redis round trip,
    which was a third of a warm /rank; Redis still shares vectors between workers and restarts.
    """

    def __init__(self, near: LocalStore, far: Store, ttl: int | None):
        self.near, self.far, self.ttl = near, far, ttl

    @property
    def status(self) -> str:
        return self.far.status

    def check(self) -> str:
        return self.far.check()

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        found = self.near.get_many(keys)
        missing = [key for key, value in zip(keys, found) if value is None]
        if missing:
            fetched = self.far.get_many(missing)
            self.near.set_many([(key, value) for key, value in zip(missing, fetched) if value is not None], self.ttl)
            by_key = dict(zip(missing, fetched))
            found = [by_key[key] if value is None else value for key, value in zip(keys, found)]
        return found

    def set_many(self, pairs: Sequence[tuple[str, bytes]], ttl: int | None) -> None:
        self.near.set_many(pairs, ttl if ttl is not None else self.ttl)
        self.far.set_many(pairs, ttl)

    def delete(self, keys: Sequence[str]) -> None:
        self.near.delete(keys)
        self.far.delete(keys)


def make_store(url: str | None, timeout_s: float, retry_s: float, local_size: int,
               on_degraded: Callable[[bool], None]) -> Store:
    """Redis when a URL is configured, else the in-process LRU."""
    if url:
        return RedisStore(url, timeout_s, retry_s, on_degraded)
    return LocalStore(local_size)
