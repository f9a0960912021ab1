"""Per-arm counters (service/experiments/counters.py): flushed off the request path, kept when Redis refuses."""
from __future__ import annotations

import pytest
import redis

from service.experiments.counters import ArmCounts
from tests.service.conftest import REDIS_URL


class Store:
    """A stand-in for service.cache.RedisStore: its `client`, which may be made to fail."""

    def __init__(self):
        self.client = redis.Redis.from_url(REDIS_URL, socket_timeout=1)


class Failing:
    def pipeline(self, transaction=False):
        raise redis.ConnectionError("down")


def test_counts_wait_for_a_flush_and_survive_a_refused_one(redis_prefix):
    store = Store()
    counts = ArmCounts(store, store, redis_prefix)
    counts.add("e/a", "impressions", 3)
    counts.add("e/b", "impressions")
    counts.add("e/b", "clicks", 2)
    assert counts.read("e") == {}  # nothing reaches Redis on the request path
    working, store.client = store.client, Failing()
    with pytest.raises(redis.ConnectionError):  # raised for the recorder to log
        counts.flush()
    store.client = working
    counts.add("e/a", "impressions")
    counts.flush()
    assert counts.read("e") == {"a": {"impressions": 4, "clicks": 0}, "b": {"impressions": 1, "clicks": 2}}
    other = ArmCounts(store, store, redis_prefix)  # another worker or replica adds to the same hash
    other.add("e/a", "clicks")
    other.flush()
    assert counts.read("e")["a"] == {"impressions": 4, "clicks": 1} and counts.read("f") == {}


def test_without_redis_the_process_keeps_the_totals():
    counts = ArmCounts()
    counts.add("e/a", "impressions", 2)
    counts.add("other/a", "impressions", 5)
    assert counts.read("e") == {}
    counts.flush()
    counts.add("e/a", "clicks")
    counts.flush()
    assert counts.read("e") == {"a": {"impressions": 2, "clicks": 1}}
