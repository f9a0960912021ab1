"""Workers' copies of users' events (service/tracking.py): served without a Redis read, dropped by the very
next read after any worker's write, distrusted once the subscription is lost, and aged out."""
import time

from service.cache import RedisStore
from service.state import RedisState
from service.tracking import MISSING

URL = "redis://127.0.0.1:6379/0"


def worker(prefix: str, max_age_s: float = 60.0) -> RedisState:
    """One worker's view of the state: its own client, its own subscription and copies."""
    return RedisState(RedisStore(URL, 1.0, 1.0, lambda down: None), prefix, copies_size=100,
                      copies_max_age_s=max_age_s)


def events_key(redis_client, prefix: str) -> bytes:
    (key,) = redis_client.keys(f"{prefix}:*:m:events")
    return key


def test_a_write_on_one_worker_is_seen_by_the_others_next_read(redis_prefix):
    a, b = worker(redis_prefix), worker(redis_prefix)
    assert a.events("m", "u1") is None and b.events("m", "u1") is None  # both now keep "no events"
    for n in range(1, 51):  # no sleep anywhere: the next read must see the write
        (a if n % 2 else b).append_events("m", "u1", [f"i{n}"], cap=20)
        expected = [f"i{k}" for k in range(max(1, n - 19), n + 1)]
        assert a.events("m", "u1") == expected and b.events("m", "u1") == expected
    assert a.events("m", "u2") is None  # other users untouched


def test_a_kept_copy_is_served_without_reading_redis_until_it_ages_out(redis_prefix, redis_client):
    a = worker(redis_prefix, max_age_s=0.3)
    a.append_events("m", "u1", ["x"], cap=5)
    assert a.events("m", "u1") == ["x"]
    redis_client.delete(events_key(redis_client, redis_prefix))  # behind the service's back: not announced
    assert a.events("m", "u1") == ["x"]  # the copy, not Redis
    time.sleep(0.35)
    assert a.events("m", "u1") is None  # aged out: Redis again


def test_a_lost_subscription_drops_every_copy(redis_prefix, redis_client):
    a, b = worker(redis_prefix), worker(redis_prefix)
    assert a.events("m", "u1") is None
    redis_client.client_kill_filter(_type="pubsub")  # a's (and b's) subscription is gone: announcements miss a
    b.append_events("m", "u1", ["y"], cap=5)
    assert a.events("m", "u1") == ["y"]  # a noticed the broken subscription and read Redis
    b.append_events("m", "u1", ["z"], cap=5)
    assert a.events("m", "u1") == ["y", "z"]  # and tracks again after subscribing anew


def test_reads_while_redis_is_unreachable_keep_nothing():
    from tests.service.processes import free_port

    dead = RedisState(RedisStore(f"redis://127.0.0.1:{free_port()}/0", 0.1, 60.0, lambda down: None), "p",
                      copies_size=10)
    assert dead.events("m", "u1") is None
    assert dead.copies.get(dead._events_key("m", "u1")) is MISSING  # nothing was kept


def test_copies_can_be_turned_off(redis_prefix, redis_client):
    state = RedisState(RedisStore(URL, 1.0, 1.0, lambda down: None), redis_prefix, copies_size=0)
    state.append_events("m", "u1", ["x"], cap=5)
    assert state.events("m", "u1") == ["x"]
    redis_client.delete(events_key(redis_client, redis_prefix))
    assert state.copies is None and state.events("m", "u1") is None
