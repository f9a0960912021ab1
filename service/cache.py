"""The user-vector cache: Redis when configured (with a circuit breaker), else an in-process LRU. (Item
vectors come precomputed in the bundle, memory-mapped: nothing to cache.)

Keys (see `Keys`) are namespaced by model and bundle version, so a new bundle never reads an old vector, and
built so that no two different inputs share a key: every client-supplied part (user id, history) enters only
through a digest of a length-unambiguous JSON encoding, never a join. Hash tags spread keys over a Redis
Cluster: a user's vectors are tagged by the user, so users spread. Values are raw little-endian float32 bytes.

`redis_client` builds the client of a URL: `redis://` / `rediss://` / `unix://` a plain `redis.Redis`,
`redis+cluster://host:port[,host:port...]` (`rediss+cluster://` for TLS) a `redis.cluster.RedisCluster`.
In a cluster no command here spans two slots: MGETs and DELs are grouped by slot, the rest are one key each
(redis-py's ClusterPipeline, transaction=False, sends each command to its slot's node).
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
from redis.cluster import ClusterNode, RedisCluster
from redis.connection import parse_url
from redis.crc import key_slot
from redis.exceptions import RedisClusterException
from redis.retry import Retry

try:
    from hiredis import pack_command
except ImportError:  # redis[hiredis] brings it; without it, redis-py's own packing
    pack_command = None

log = logging.getLogger("recserve.cache")
CHUNK = 1000  # keys per MGET / per pipeline round


def digest(*parts: object) -> str:
    """A 128-bit hex digest of a JSON encoding of `parts`: injective on its inputs (JSON strings are quoted
    and escaped, lists delimited), so ["a\x1fb"] and ["a", "b"] never meet."""
    text = json.dumps(parts, ensure_ascii=False, separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


class Keys:
    """Key builder of one bundle version.

    user vector : `<prefix>:{u.<user digest>}:<model>:user:<digest of model, version, user, history, generation>`
                  (anonymous requests are tagged by their history's digest: `{h.<digest>}`)
    """

    def __init__(self, prefix: str, model: str, version: str):
        self.prefix, self.model, self.version = prefix, model, version

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


Client = redis.Redis | RedisCluster
PLAIN_SCHEMES = ("redis", "rediss", "unix")
CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
URL_FORMS = ("redis://[user:password@]host:port/db, rediss://... (TLS), unix:///path/to/socket, "
             "redis+cluster://[user:password@]host:port[,host:port...] or rediss+cluster://... (TLS)")
# What a Redis outage looks like to a caller: the client's own errors, a cluster client that cannot map its
# slots (RedisClusterException is no RedisError), and socket errors.
REDIS_ERRORS = (redis.RedisError, RedisClusterException, OSError)


def _cluster_nodes(url: str) -> tuple[str, list[tuple[str, int]]]:
    """(a single-node URL redis-py parses: the scheme without "+cluster", credentials, the first node, path
    and query; every startup node as (host, port)) of a cluster URL. ValueError names what is wrong."""
    scheme, _, rest = url.partition("://")
    scheme = scheme.lower()
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    netloc, tail = rest[:cut], rest[cut:]
    userinfo, at, hosts = netloc.rpartition("@")
    nodes = []
    for part in hosts.split(","):
        if part.startswith("["):  # [IPv6]:port
            host, _, port = part[1:].partition("]")
            port = port.removeprefix(":")
        else:
            host, _, port = part.partition(":")
        if not host:
            raise ValueError(f"the cluster URL {scheme}://... names an empty host in {hosts!r}")
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"the cluster URL {scheme}://... needs a port from 1 to 65535 after each host, "
                             f"got {part!r}")
        nodes.append((host, int(port)))
    path = tail.partition("?")[0]
    if path not in ("", "/", "/0"):
        raise ValueError(f"a Redis Cluster has database 0 only; the cluster URL's path is {path!r}")
    first = f"[{nodes[0][0]}]" if ":" in nodes[0][0] else nodes[0][0]
    single = f"{CLUSTER_SCHEMES[scheme]}://{userinfo}{at}{first}:{nodes[0][1]}{tail}"
    if parse_url(single).get("db", 0) != 0:  # also checks the query's options (ValueError)
        raise ValueError("a Redis Cluster has database 0 only; the cluster URL asks for another")
    return single, nodes


def redacted(url: str) -> str:
    """`url` without its password, for logs and /readyz."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, hosts = rest.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    return f"{scheme}{sep}{userinfo.partition(':')[0]}:***@{hosts}"


def redis_factory(url: str, timeout_s: float) -> Callable[[], Client]:
    """Check `url` now (ValueError listing the forms understood) and return a function that builds its
    client: short connect and operation timeouts, no retries (callers decide what a failure means; the
    cache's circuit breaker turns it into misses). A cluster client connects when built, to learn the
    slots, and raises a REDIS_ERRORS member when no startup node answers; a plain client connects on use."""
    options = dict(socket_timeout=timeout_s, socket_connect_timeout=timeout_s, retry=Retry(NoBackoff(), 0))
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme in CLUSTER_SCHEMES:
        single, nodes = _cluster_nodes(url)
        # `url` gives the first node, the credentials, TLS and query options to every node; the other
        # startup nodes are only tried when it does not answer. db must not be passed: a cluster has db 0 only.
        return lambda: RedisCluster(url=single, startup_nodes=[ClusterNode(h, p) for h, p in nodes[1:]],
                                    **options)
    if scheme not in PLAIN_SCHEMES:
        raise ValueError(f"a Redis URL must look like one of: {URL_FORMS}; got scheme {scheme!r}")
    redis.Redis.from_url(url)  # parses without connecting: a bad port or option raises ValueError now
    return lambda: redis.Redis.from_url(url, **options)


def redis_client(url: str, timeout_s: float) -> Client:
    """The client of `url` (see `redis_factory`), built now."""
    return redis_factory(url, timeout_s)()


def send_packed(client: Client, commands: Sequence[tuple]) -> None:
    """Send `commands` (tuples of str, bytes or int arguments) in one round trip, packed by hiredis in C; raise
    the first error any of them got. For commands of thousands of arguments (the feedback log's summaries):
    redis-py's pipeline spends ~1 us of Python an argument checking and encoding them. A cluster client, or a
    machine without hiredis, takes the pipeline."""
    if isinstance(client, RedisCluster) or pack_command is None:
        pipe = client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        pipe.execute()
        return
    packed = b"".join(pack_command(command) for command in commands)
    pool = client.connection_pool
    conn = pool.get_connection()
    try:
        conn.send_packed_command([packed])
        errors = []
        for _ in commands:  # every reply is read, an error one included, so the connection stays in step
            try:
                conn.read_response()
            except redis.ResponseError as exc:
                errors.append(exc)
    except BaseException:
        conn.disconnect()  # a reply may be left unread: the connection cannot be reused
        raise
    finally:
        pool.release(conn)
    if errors:
        raise errors[0]


def by_slot(keys: Sequence[str]) -> list[list[str]]:
    """`keys` grouped by Redis Cluster hash slot, groups in order of first appearance."""
    groups: dict[int, list[str]] = {}
    for key in keys:
        groups.setdefault(key_slot(key.encode()), []).append(key)
    return list(groups.values())


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
    """Redis or a Redis Cluster with short timeouts. A failure opens the circuit: calls return misses without
    touching Redis until `retry_s` has passed, then one call tries again, so the service recovers by itself.

    The client is built on first use, inside the circuit: a cluster client connects when built, so a cluster
    that is down when the service starts leaves the cache degraded instead of failing the start. In a cluster,
    one node down opens the circuit for every key (the cache as a whole reads "degraded")."""

    def __init__(self, url: str, timeout_s: float, retry_s: float, on_degraded: Callable[[bool], None]):
        self._factory = redis_factory(url, timeout_s)  # a malformed URL fails here, at startup
        self.cluster = url.partition("://")[0].lower() in CLUSTER_SCHEMES
        self.timeout_s = timeout_s
        self._client: Client | None = None
        self._client_lock = threading.Lock()
        self.retry_s = retry_s
        self._on_degraded = on_degraded
        self._down_until = 0.0
        self.degraded = False
        self.answered = False  # Redis has answered a call at least once (see Settings.wait_for_redis)
        self.url = redacted(url)

    @property
    def client(self) -> Client:
        """The client, built on first use (may raise a REDIS_ERRORS member for a cluster)."""
        if self._client is None:
            with self._client_lock:
                if self._client is None:
                    self._client = self._factory()
        return self._client

    @property
    def status(self) -> str:
        return "degraded" if self.degraded else "up"

    def attempt(self, fn: Callable[[], object]) -> object:
        """`fn()` through the circuit: its result, or the REDIS_ERRORS member it raised (the circuit opens);
        while the circuit is open, a ConnectionError at once, without touching Redis. For writes that must not
        be dropped silently (service/state.py); the cache's own calls fail open through `call`."""
        if self.degraded and time.monotonic() < self._down_until:
            raise redis.ConnectionError(f"redis unreachable; retrying in {self._down_until - time.monotonic():.1f}s")
        try:
            result = fn()
        except REDIS_ERRORS as exc:
            if not self.degraded:
                log.warning("redis unreachable, serving without it and retrying every %.1fs: %s", self.retry_s, exc)
            self.degraded, self._down_until = True, time.monotonic() + self.retry_s
            self._on_degraded(True)
            raise
        self.answered = True
        if self.degraded:
            log.warning("redis is back")
            self.degraded = False
            self._on_degraded(False)
        return result

    def call(self, fn: Callable[[], object], default: object) -> object:
        """`fn()` through the circuit, or `default` when Redis fails or the circuit is open (fail open)."""
        try:
            return self.attempt(fn)
        except REDIS_ERRORS:
            return default

    def _ping(self) -> object:
        if self.cluster:  # every primary: one that does not answer holds slots no key of which can be read
            return self.client.ping(target_nodes=RedisCluster.PRIMARIES)
        return self.client.ping()

    def check(self) -> str:
        """Ping (when the circuit allows; in a cluster, every primary) and report "up" or "degraded"."""
        self.call(self._ping, None)
        return self.status

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if len(keys) == 1:
            return [self.call(lambda: self.client.get(keys[0]), None)]

        out: list[bytes | None] = []
        for start in range(0, len(keys), 20 * CHUNK):
            part = keys[start:start + 20 * CHUNK]
            out.extend(self.call(lambda p=part: self._mget(p), None) or [None] * len(part))
        return out

    def _mget(self, keys: Sequence[str]) -> list[bytes | None]:
        """One round trip (per node, in a cluster) of MGETs of at most CHUNK keys, none spanning two slots."""
        groups = by_slot(keys) if self.cluster else [list(keys)]
        pipe = self.client.pipeline(transaction=False)
        order: list[str] = []
        for group in groups:
            for start in range(0, len(group), CHUNK):
                pipe.execute_command("MGET", *group[start:start + CHUNK])  # pipe.mget is blocked in a cluster
            order.extend(group)
        values = [value for part in pipe.execute() for value in part]
        if len(groups) == 1:
            return values
        found = dict(zip(order, values))
        return [found[key] for key in keys]

    def set_many(self, pairs: Sequence[tuple[str, bytes]], ttl: int | None) -> None:
        for start in range(0, len(pairs), 20 * CHUNK):
            part = pairs[start:start + 20 * CHUNK]

            def write(part=part) -> None:
                pipe = self.client.pipeline(transaction=False)  # one key a command: a cluster routes each
                for key, value in part:
                    pipe.set(key, value, ex=ttl or None)
                pipe.execute()

            self.call(write, None)

    def delete(self, keys: Sequence[str]) -> None:
        if not keys:
            return
        if not self.cluster:
            self.call(lambda: self.client.delete(*keys), None)
            return

        def delete_by_slot() -> None:
            pipe = self.client.pipeline(transaction=False)
            for group in by_slot(keys):
                for start in range(0, len(group), CHUNK):
                    pipe.execute_command("DEL", *group[start:start + CHUNK])
            pipe.execute()

        self.call(delete_by_slot, None)


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
    """Redis (a cluster for `redis+cluster://` URLs) when a URL is configured, else the in-process LRU.
    A malformed URL raises ValueError here; an unreachable Redis does not (the cache starts degraded)."""
    if url:
        return RedisStore(url, timeout_s, retry_s, on_degraded)
    return LocalStore(local_size)
