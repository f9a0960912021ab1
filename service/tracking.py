"""Per-process copies of shared state, dropped the moment any worker announces a write.

A warm /rank that names only a `user_id` reads the user's runtime clicks. From Redis that is one round trip
per request, which cost a quarter of the warm /rank throughput; here each worker keeps what it read and
every writer publishes the key it changed on one channel (`RedisState.append_events`). Before each read the
reader drains its subscription without blocking (one poll of a socket), so a write that answered before this
request started is seen. That rests on how Redis writes replies: the PUBLISH runs inside the writer's
MULTI/EXEC, and Redis flushes the clients a pass of commands made ready newest first, so the subscribers'
sockets get the announcement before the writer's reply leaves Redis (tested back to back in one thread:
tests/service/test_tracking.py). When another client's command in the same pass reorders that, the two
writes are still microseconds apart, where the writer's worker must still answer its client and the client
send its next request. A copy is trusted only while the subscription is: on any error every copy is dropped,
and reads go to Redis until a new subscription is confirmed.

What bypasses the announcements (an operator's DEL, an `events_ttl_s` expiry) is seen within `max_age_s`.
Redis's own client-side caching (CLIENT TRACKING) would do the announcing, but redis-py uses it only from
Redis 7.4 and over RESP3; this works with any Redis and a Redis Cluster (where the PUBLISH goes to the node
the subscribers listen to).
"""
from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from typing import Any

from service.cache import REDIS_ERRORS, RedisStore

log = logging.getLogger("recserve.tracking")
MISSING = object()


class TrackedCopies:
    """Key -> value read from Redis, for at most `size` keys and `max_age_s` seconds each. `get` answers
    MISSING where no trustworthy copy is held; `put` keeps a value read after `epoch()` was taken, unless an
    announcement arrived in between (the value may predate the write it announced)."""

    def __init__(self, store: RedisStore, channel: str, size: int, max_age_s: float):
        self.store, self.channel, self.size, self.max_age_s = store, channel, size, max_age_s
        self._copies: OrderedDict[str, tuple[Any, float]] = OrderedDict()
        self._lock = threading.Lock()
        self._pubsub: Any = None
        self._epoch = 0  # bumped by every announcement drained and every lost subscription

    def epoch(self) -> int:
        return self._epoch

    def get(self, key: str) -> Any:
        with self._lock:
            if not self._drain():
                return MISSING
            entry = self._copies.get(key)
            if entry is None or entry[1] < time.monotonic():
                return MISSING
            self._copies.move_to_end(key)
            return entry[0]

    def put(self, key: str, value: Any, epoch: int) -> None:
        with self._lock:
            if epoch != self._epoch or self._pubsub is None:
                return
            self._copies[key] = (value, time.monotonic() + self.max_age_s)
            self._copies.move_to_end(key)
            while len(self._copies) > self.size:
                self._copies.popitem(last=False)

    def forget(self, key: str) -> None:
        """Drop a key this process just wrote (its own announcement would drop it too, on the next drain)."""
        with self._lock:
            self._copies.pop(key, None)
            self._epoch += 1

    def drain(self) -> None:
        """Apply pending announcements now (the sync loop calls this, so an idle worker's subscription does not
        fill Redis's output buffer for it)."""
        with self._lock:
            self._drain()

    def _drain(self) -> bool:
        """Under the lock: apply every pending announcement; True when the copies can be trusted."""
        if self._pubsub is None and not self._subscribe():
            return False
        try:
            while (message := self._pubsub.get_message(timeout=0)) is not None:
                if message["type"] == "message":
                    self._copies.pop(message["data"].decode(), None)
                    self._epoch += 1
        except REDIS_ERRORS as exc:
            log.warning("lost the subscription to %s (%s): reading state from Redis until it is back",
                        self.channel, exc)
            self._drop_subscription()
            return False
        return True

    def _subscribe(self) -> bool:
        """A new subscription, confirmed by Redis before any copy is kept (a write announced before the
        confirmation would be missed); tried through the cache's circuit breaker, so not per request while
        Redis is down."""
        def subscribe() -> Any:
            pubsub = self.store.client.pubsub()
            try:
                pubsub.subscribe(self.channel)
                deadline = time.monotonic() + 10 * self.store.timeout_s
                while time.monotonic() < deadline:
                    message = pubsub.get_message(timeout=self.store.timeout_s)
                    if message is not None and message["type"] == "subscribe":
                        return pubsub
                raise TimeoutError(f"no confirmation of the subscription to {self.channel}")
            except BaseException:
                pubsub.close()
                raise

        self._pubsub = self.store.call(subscribe, None)
        return self._pubsub is not None

    def _drop_subscription(self) -> None:
        try:
            self._pubsub.close()
        except REDIS_ERRORS:
            pass
        self._pubsub = None
        self._copies.clear()
        self._epoch += 1
