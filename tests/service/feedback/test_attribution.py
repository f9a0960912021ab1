"""Click attribution's summaries in Redis (service/feedback/attribution.py): written in one packed round trip
(service.cache.send_packed), found by request id in whichever minute they fell, expiring with the window."""
import time

import pytest
import redis

from service.cache import RedisStore, send_packed
from service.feedback.attribution import BUCKET_S, RedisShown, Summary
from tests.service.conftest import REDIS_URL


def store() -> RedisStore:
    return RedisStore(REDIS_URL, 1.0, 1.0, lambda down: None)


def test_summaries_of_one_batch_are_found_in_either_minute(redis_prefix, redis_client):
    shown = RedisShown(store(), store(), redis_prefix, window_s=3600)
    minute = int(time.time() // BUCKET_S) * BUCKET_S
    entries = [(f"r{i}", minute - 30 + i * 10, Summary("m", "v1", "default", [f"i{i}", "x"]).encode())
               for i in range(6)]  # three in the minute before, three in this one
    shown.remember(entries[:3])  # one minute: its fields interleaved in one go
    shown.remember(entries[2:])  # two minutes: grouped one by one
    for request_id, _, raw in entries:
        assert shown.find(request_id) == Summary.decode(raw)
    assert shown.find("never-answered") is None
    keys = sorted(redis_client.keys(f"{redis_prefix}:*:shown"))
    assert len(keys) == 2 and all(redis_client.hlen(k) == 3 for k in keys)
    assert all(0 < redis_client.ttl(k) <= 3600 + 3 * BUCKET_S for k in keys)


def test_send_packed_runs_every_command_and_raises_the_first_error(redis_prefix, redis_client):
    client = store().client
    key = f"{redis_prefix}:packed"
    send_packed(client, [("HSET", key, "a", b"1", "b", 2), ("EXPIRE", key, 100)])
    assert redis_client.hgetall(key) == {b"a": b"1", b"b": b"2"} and 0 < redis_client.ttl(key) <= 100
    with pytest.raises(redis.ResponseError, match="wrong number of arguments"):
        send_packed(client, [("HSET", key), ("HSET", key, "c", "3")])
    assert redis_client.hget(key, "c") == b"3"  # the command after the refused one ran
    send_packed(client, [("HSET", key, "d", "4")])  # and the connection, all its replies read, serves on
    assert redis_client.hget(key, "d") == b"4"


def test_send_packed_raises_when_redis_is_unreachable():
    client = RedisStore("redis://127.0.0.1:1/0", 0.5, 1.0, lambda down: None).client
    with pytest.raises(redis.ConnectionError):
        send_packed(client, [("HSET", "k", "a", "1")])
