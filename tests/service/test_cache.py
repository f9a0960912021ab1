"""The Redis cache: hits, version isolation, TTLs, and surviving an outage."""
import shutil
import socket
import subprocess
import time

import pytest
import redis

from service.cache import Keys, LocalStore, NearCache, RedisStore
from tests.service.bundles import build
from tests.service.processes import free_port
from tests.service.answers import ranking

RANK = {"model": "bert4rec", "user_id": "u1", "candidates": ["i1", "i2", "i3"]}


def counter(client, kind, result):
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(f'recserve_cache_requests_total{{kind="{kind}",result="{result}"}}'):
            return float(line.split()[-1])
    return 0.0


def test_user_vectors_are_cached_in_redis_and_start_up_reads_none(make_client, redis_prefix, redis_client, models):
    first = make_client(redis_url="redis://127.0.0.1:6379/0", cache_prefix=redis_prefix)
    assert first.get("/readyz").json()["cache"] == "up"
    assert not redis_client.keys(f"{redis_prefix}:*")  # item vectors come from the bundle, not Redis
    keys = Keys(redis_prefix, "bert4rec", models["bert4rec"].version)
    first.post("/rank", json=RANK)
    first.post("/rank", json=RANK)
    assert counter(first, "user", "miss") == 1 and counter(first, "user", "hit") == 1
    (user_key,) = redis_client.keys(f"{redis_prefix}:{keys.user_tag('u1', [])}:bert4rec:user:*")
    assert 0 < redis_client.ttl(user_key) <= 300
    second = make_client(redis_url="redis://127.0.0.1:6379/0", cache_prefix=redis_prefix)
    assert ranking(second.post("/rank", json=RANK)) == ranking(first.post("/rank", json=RANK))
    assert counter(second, "user", "hit") == 1 and counter(second, "user", "miss") == 0  # the first's vector


def test_bundle_versions_never_share_keys(make_client, redis_prefix, redis_client, artifacts):
    url = "redis://127.0.0.1:6379/0"
    older = make_client(artifacts=artifacts, redis_url=url, cache_prefix=redis_prefix)
    older.post("/rank", json=RANK)
    newer = build(artifacts, "bert4rec", version="20260102T000000Z-00000002", seed=7)
    client = make_client(artifacts=artifacts, redis_url=url, cache_prefix=redis_prefix)
    body = client.post("/rank", json=RANK).json()
    assert counter(client, "user", "miss") == 1  # the older version's vector of u1 is not this one's
    assert len(redis_client.keys(f"{redis_prefix}:*:bert4rec:user:*")) == 2
    assert body["version"] == newer.version
    user = newer.expected_user(newer.histories["u1"])
    want = dict(zip(["i1", "i2", "i3"], newer.expected_scores(user, newer.item_matrix()[[1, 2, 3]])))
    assert all(abs(r["score"] - want[r["item_id"]]) < 1e-4 for r in body["results"])


def test_near_cache_keeps_user_vectors_in_process(make_client, redis_prefix, redis_client, models):
    """A repeat user is answered from the worker's own copy even when Redis lost the key; with the near
    cache off, the same request goes back to Redis (a miss, then encoded again)."""
    tag = Keys(redis_prefix, "bert4rec", models["bert4rec"].version).user_tag("u1", [])
    for near_size, expected in [(100, ("hit", 1)), (0, ("miss", 2))]:
        client = make_client(redis_url="redis://127.0.0.1:6379/0", cache_prefix=redis_prefix,
                             user_near_cache_size=near_size)
        first = client.post("/rank", json=RANK).json()
        redis_client.delete(*redis_client.keys(f"{redis_prefix}:{tag}:bert4rec:user:*"))
        assert ranking(client.post("/rank", json=RANK)) == ranking(first)
        assert counter(client, "user", expected[0]) == expected[1]


def test_near_cache_reads_through_writes_through_and_deletes_both(redis_prefix, redis_client):
    far = RedisStore("redis://127.0.0.1:6379/0", 1.0, 1.0, lambda down: None)
    cache = NearCache(LocalStore(2), far, ttl=60)
    a, b, c = (f"{redis_prefix}:{name}" for name in "abc")
    redis_client.set(a, b"A")
    assert cache.get_many([a, b]) == [b"A", None]
    redis_client.delete(a)
    assert cache.get_many([a]) == [b"A"]  # filled on the read through
    cache.set_many([(b, b"B"), (c, b"C")], 30)
    assert redis_client.get(b) == b"B" and 0 < redis_client.ttl(b) <= 30
    assert cache.get_many([a, b, c]) == [None, b"B", b"C"]  # a was the least recent of 2 entries
    cache.delete([b])
    assert redis_client.get(b) is None and cache.get_many([b]) == [None]


def start_redis(port: int) -> subprocess.Popen:
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return proc
        except OSError:
            time.sleep(0.02)
    proc.kill()
    raise RuntimeError("redis-server did not start")


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not on PATH")
def test_redis_outage_degrades_then_recovers(make_client):
    port = free_port()
    proc = start_redis(port)
    try:
        client = make_client(redis_url=f"redis://127.0.0.1:{port}/0", redis_retry_s=0.2)
        assert client.post("/rank", json=RANK).status_code == 200
        proc.kill()
        proc.wait()
        for _ in range(3):
            assert client.post("/rank", json=RANK).status_code == 200
            assert client.post("/recommend", json={"model": "nrms", "user_id": "u2"}).status_code == 200
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["cache"] == "degraded"
        assert ready.json()["status"] == "degraded" and "does not answer" in ready.json()["reason"]
        assert "recserve_cache_degraded 1.0" in client.get("/metrics").text
        proc = start_redis(port)
        deadline = time.monotonic() + 5
        while client.get("/readyz").json()["cache"] != "up":
            assert time.monotonic() < deadline, "did not recover"
            time.sleep(0.1)
        assert "recserve_cache_degraded 0.0" in client.get("/metrics").text
        fresh = {**RANK, "history": ["i4", "i5"]}  # a user this worker has not kept in process
        client.post("/rank", json=fresh)
        assert redis.Redis(port=port).keys("*:user:*")  # writing Redis again
    finally:
        proc.kill()
        proc.wait()
