"""The cache on a real Redis Cluster: three `redis-server --cluster-enabled yes` nodes on free loopback ports,
joined with `redis-cli --cluster create`, started once for this module (never the shared Redis at :6379)."""
from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from service.state import RedisState
from service.cache import Keys, RedisStore, _cluster_nodes, digest, make_store, redis_factory
from service.feedback.attribution import BUCKET_S, RedisShown, Summary

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None or shutil.which("redis-cli") is None,
                                reason="redis-server and redis-cli are needed for a local cluster")


def free_cluster_port(taken: set[int]) -> int:
    """A loopback port that is free, as is its cluster bus port (port + 10000)."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + 10000 > 65535 or port in taken or port + 10000 in taken:
            continue
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port + 10000))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port pair for a cluster node")


class Cluster:
    """Three primaries, no replicas, no persistence; nodes can be killed and started again on their ports."""

    def __init__(self, root: Path):
        self.root = root
        taken: set[int] = set()
        for _ in range(3):
            taken.add(free_cluster_port(taken))
        self.ports = sorted(taken)
        self.procs: dict[int, subprocess.Popen] = {}

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def start(self, port: int) -> None:
        self.procs[port] = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
             "--cluster-config-file", str(self.root / f"nodes-{port}.conf"), "--cluster-node-timeout", "1000",
             "--dir", str(self.root), "--save", "", "--appendonly", "no", "--daemonize", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 5
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                return
            except OSError:
                assert time.monotonic() < deadline, f"redis-server on {port} did not start"
                time.sleep(0.02)

    def kill(self, port: int) -> None:
        proc = self.procs.pop(port)
        proc.kill()
        proc.wait()

    def node(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, socket_timeout=1)

    def wait_ok(self, timeout_s: float = 10) -> None:
        """Until every node says cluster_state:ok and knows all three primaries as connected."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if all(self.node(p).cluster("info")["cluster_state"] == "ok"
                       and sum(n["connected"] and "fail" not in n["flags"]
                           for n in self.node(p).cluster("nodes").values()) == 3
                       for p in self.ports):
                    return
            except redis.RedisError:
                pass
            assert time.monotonic() < deadline, "the cluster did not reach cluster_state:ok"
            time.sleep(0.05)

    def keys_by_node(self, pattern: str) -> dict[int, list[bytes]]:
        """The keys matching `pattern` that each node holds (each node's own client)."""
        return {p: list(self.node(p).scan_iter(match=pattern, count=1000)) for p in self.ports}

    def stop(self) -> None:
        for port in list(self.procs):
            self.kill(port)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("cluster"))
    try:
        for port in c.ports:
            c.start(port)
        subprocess.run(["redis-cli", "--cluster", "create", *(f"127.0.0.1:{p}" for p in c.ports),
                       "--cluster-replicas", "0", "--cluster-yes"],
                       check=True, capture_output=True, timeout=30)
        c.wait_ok()
        yield c
    finally:
        c.stop()


@pytest.fixture()
def prefix() -> str:
    return f"recserve-test-{uuid.uuid4().hex[:10]}"


# Generous: the tests check behaviour, not latency, on a shared machine where 50 ms (the default) can pass.
TIMEOUT_S = 1.0


def user_keys(cluster: Cluster, prefix: str, user_id: str, kind: str = "user") -> list[bytes]:
    """The user's vector keys (kind "user") or event lists (kind "events") in the cluster."""
    tag = f"{{u.{digest(user_id)}}}"
    return [k for keys in cluster.keys_by_node(f"{prefix}:{tag}:*").values() for k in keys
            if k.split(b":")[-1 if kind == "events" else -2] == kind.encode()]


def test_every_route_works_and_users_spread_over_the_nodes(cluster, make_client, models, prefix):
    client = make_client(redis_url=cluster.url, cache_prefix=prefix, redis_timeout_s=TIMEOUT_S)
    assert client.get("/readyz").json()["cache"] == "up"
    assert [m["name"] for m in client.get("/models").json()] == sorted(models)

    for name, model in models.items():
        cands = model.items[:3]
        rank = client.post("/rank", json={"model": name, "user_id": "u1", "candidates": cands})
        assert rank.status_code == 200 and {r["item_id"] for r in rank.json()["results"]} == set(cands), name
        rec = client.post("/recommend", json={"model": name, "user_id": "u1", "k": 5})
        assert rec.status_code == 200 and len(rec.json()["results"]) == 5, name
    assert user_keys(cluster, prefix, "u1"), "no user vector in the cluster"

    added = client.post("/items", json={"model": "nrms", "items": [{"item_id": "FRESH", "title": "w1 w2 w3"}]})
    assert added.status_code == 200  # the raw item is state, on the model's node
    assert len([p for p, keys in cluster.keys_by_node(f"{prefix}:*:nrms:added").items() if keys]) == 1

    # Events drop the user's cached vector (a DEL in the cluster); the next /rank writes a new one.
    rank = {"model": "bert4rec", "user_id": "u6", "candidates": ["i1", "i2", "i3"]}
    client.post("/rank", json=rank)
    before = user_keys(cluster, prefix, "u6")
    assert len(before) == 1
    events = client.post("/users/u6/events", json={"model": "bert4rec", "items": ["i9", "i10"]})
    assert events.status_code == 200
    assert events.json()["models"] == {"bert4rec": len(models["bert4rec"].histories["u6"]) + 2}
    assert user_keys(cluster, prefix, "u6") == []
    (events_key,) = user_keys(cluster, prefix, "u6", "events")  # the clicks: state, on the user's node, no TTL
    assert cluster.node(next(p for p, k in cluster.keys_by_node(events_key.decode()).items() if k)).ttl(events_key) == -1
    assert client.post("/rank", json=rank).status_code == 200
    after = user_keys(cluster, prefix, "u6")
    assert len(after) == 1 and after != before

    # 1,000 users: their vectors spread over all three nodes, each with the user TTL.
    for i in range(1000):
        r = client.post("/rank", json={"model": "bert4rec", "user_id": f"user-{i}", "history": ["i1", "i2"],
                                       "candidates": ["i3", "i4"]})
        assert r.status_code == 200
    per_node = {p: [k for k in keys if b":bert4rec:user:" in k]
                for p, keys in cluster.keys_by_node(f"{prefix}:{{u.*").items()}
    counts = {p: len(keys) for p, keys in per_node.items()}
    assert sum(counts.values()) >= 1000
    assert all(n > 200 for n in counts.values()), counts  # ~1/3 each: the slots are split in three ranges
    port = cluster.ports[0]
    assert all(0 < cluster.node(port).ttl(k) <= 300 for k in per_node[port][:50])


def test_multi_key_commands_never_cross_slots(cluster, prefix):
    """Keys of many users (many slots, three nodes) in one get_many and one delete: the store groups them
    by slot, where one MGET or DEL over them would be refused (CROSSSLOT)."""
    store = RedisStore(cluster.url, TIMEOUT_S, 1.0, lambda down: None)
    keys = [f"{prefix}:{{u.{digest(str(i))}}}:x" for i in range(100)]
    items = [f"{prefix}:{{m.0}}:item:{i}" for i in range(2500)]  # one slot, more than one MGET chunk
    store.set_many([(k, k.encode()) for k in keys + items], 60)
    assert sum(bool(v) for v in cluster.keys_by_node(f"{prefix}:*").values()) == 3
    mixed = keys[::2] + [f"{prefix}:absent"] + items + keys[1::2]
    assert store.get_many(mixed) == [None if k.endswith("absent") else k.encode() for k in mixed]
    assert store.status == "up"
    store.delete(keys + items)
    assert store.status == "up" and store.get_many(keys + items) == [None] * len(keys + items)


def test_workers_copies_of_events_follow_writes_on_a_cluster(cluster, prefix):
    """The announcements that keep workers' copies of events exact (service/tracking.py) reach subscribers
    on any node: users on three nodes, written by one worker, read at once by another."""
    a, b = (RedisState(RedisStore(cluster.url, TIMEOUT_S, 1.0, lambda down: None), prefix, copies_size=100)
            for _ in range(2))
    users = [f"user{i}" for i in range(30)]
    assert all(a.events("m", u) is None for u in users)
    for n in range(1, 4):
        for user in users:
            b.append_events("m", user, [f"i{n}"], cap=10)
            assert a.events("m", user) == [f"i{k}" for k in range(1, n + 1)]
    assert len([n for n, keys in cluster.keys_by_node(f"{prefix}:*:m:events").items() if keys]) == 3


def test_startup_nodes_come_from_the_url(cluster):
    """The URL lists startup nodes: a first one that does not answer is skipped."""
    dead = free_cluster_port(set(cluster.ports))
    store = RedisStore(f"redis+cluster://127.0.0.1:{dead},127.0.0.1:{cluster.ports[1]}", TIMEOUT_S, 1.0,
                       lambda d: None)
    assert store.check() == "up"
    assert {n.port for n in store.client.get_primaries()} == set(cluster.ports)
    alone = RedisStore(f"redis+cluster://127.0.0.1:{dead}", 0.2, 1.0, lambda d: None)
    assert alone.check() == "degraded"


def test_a_cluster_down_at_startup_leaves_the_service_serving(make_client):
    dead = free_cluster_port(set())
    client = make_client(redis_url=f"redis+cluster://127.0.0.1:{dead}")
    assert client.get("/readyz").json()["cache"] == "degraded"
    assert client.post("/rank", json={"model": "bert4rec", "user_id": "u1", "candidates": ["i1"]}).status_code == 200


def test_cluster_urls_are_checked():
    single, nodes = _cluster_nodes("rediss+cluster://me:pw@h1:7000,[::1]:7001,h3:7002/0?ssl_cert_reqs=none")
    assert single == "rediss://me:pw@h1:7000/0?ssl_cert_reqs=none"
    assert nodes == [("h1", 7000), ("::1", 7001), ("h3", 7002)]
    for bad, says in [("redis+cluster://h1", "port"), ("redis+cluster://h1:7000,:7001", "empty host"),
                      ("redis+cluster://h1:99999", "port"), ("redis+cluster://h1:7000/2", "database 0"),
                      ("redis+cluster://h1:7000?db=3", "database 0"), ("unix+cluster:///tmp/r.sock", "scheme"),
                      ("redis+sentinel://h1:26379", "scheme"), ("http://h1:6379", "scheme")]:
        with pytest.raises(ValueError, match=says):
            redis_factory(bad, 0.1)
    with pytest.raises(ValueError):
        make_store("redis+cluster://h1:7000?socket_timeout=soon", 0.1, 1.0, 10, lambda d: None)
    assert isinstance(make_store("redis://127.0.0.1:6379/0", 0.1, 1.0, 10, lambda d: None).client, redis.Redis)


def test_a_dead_node_degrades_the_cache_then_it_recovers(cluster, make_client, prefix):
    """Runs last in the module: it kills a node (the URL's first) and starts it again, empty."""
    client = make_client(redis_url=cluster.url, cache_prefix=prefix, redis_timeout_s=TIMEOUT_S,
                         redis_retry_s=0.2)
    rank = {"model": "bert4rec", "history": ["i1", "i2"], "candidates": ["i3", "i4"]}
    assert client.post("/rank", json={**rank, "user_id": "before"}).status_code == 200
    victim = cluster.ports[0]
    cluster.kill(victim)
    try:
        for i in range(8):  # users on several nodes, the dead one's included
            assert client.post("/rank", json={**rank, "user_id": f"while-{i}"}).status_code == 200
            assert client.post("/recommend", json={"model": "gru4recf", "user_id": "u2"}).status_code == 200
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["cache"] == "degraded"
        assert "recserve_cache_degraded 1.0" in client.get("/metrics").text
    finally:
        cluster.start(victim)
        cluster.wait_ok()
    deadline = time.monotonic() + 10
    while client.get("/readyz").json()["cache"] != "up":
        assert time.monotonic() < deadline, "the cache did not recover"
        time.sleep(0.1)
    assert client.post("/rank", json={**rank, "user_id": "after"}).status_code == 200
    assert len(user_keys(cluster, prefix, "after")) == 1
    assert "recserve_cache_degraded 0.0" in client.get("/metrics").text


def test_click_attribution_summaries_on_a_cluster(cluster, prefix):
    """The summaries' two minutes are two keys, two slots: the cluster client sends each to its node
    (service.cache.send_packed takes its pipeline there)."""
    shown = RedisShown(*(RedisStore(cluster.url, TIMEOUT_S, 1.0, lambda down: None) for _ in range(2)), prefix, 3600)
    minute = int(time.time() // BUCKET_S) * BUCKET_S
    entries = [(f"r{i}", minute - 30 + i * 20, Summary("m", "v1", "default", [f"i{i}"]).encode()) for i in range(4)]
    shown.remember(entries)
    assert [shown.find(f"r{i}") for i in range(4)] == [Summary("m", "v1", "default", [f"i{i}"]) for i in range(4)]
