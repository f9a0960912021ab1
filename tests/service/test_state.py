"""The Redis state store on its own: events appended and capped, added items and their counter; writes that
cannot be stored raise (503), reads fail open, both through the cache's circuit breaker."""
import socket

import pytest

from service.cache import RedisStore
from service.state import RedisState, StateUnavailable

STORE = RedisStore("redis://127.0.0.1:6379/0", 1.0, 1.0, lambda down: None)


@pytest.fixture
def state(redis_prefix):
    return RedisState(STORE, redis_prefix)


def test_events_append_in_order_capped_per_model_and_user(state):
    assert state.events("m", "u1") is None
    assert state.append_events("m", "u1", ["a", "b"], cap=3) == 2
    assert state.append_events("m", "u1", ["c", "d"], cap=3) == 3
    assert state.events("m", "u1") == ["b", "c", "d"]
    assert state.events("other", "u1") is None and state.events("m", "u2") is None


def test_user_ids_that_look_alike_do_not_share_events(state):
    state.append_events("m", "a:b", ["x"], cap=10)
    assert state.events("m", "a") is None and state.events("m", "a:b") == ["x"]


def test_added_items_and_their_counter(state):
    before = state.added_seq("m")
    state.add_items("m", {"N1": {"title": "t1", "category": None}})
    state.add_items("m", {"N1": {"title": "t1 again", "category": "c"}, "N2": {"title": "t2", "category": None}})
    assert state.added_items("m") == {"N1": {"title": "t1 again", "category": "c"}, "N2": {"title": "t2", "category": None}}
    assert state.added_seq("m") != before and state.added_items("other") == {}


def test_redis_events_expire_when_a_ttl_is_set(redis_prefix, redis_client):
    state = RedisState(STORE, redis_prefix, events_ttl_s=60)
    state.append_events("m", "u1", ["a"], cap=5)
    (key,) = redis_client.keys(f"{redis_prefix}:*:m:events")
    assert 0 < redis_client.ttl(key) <= 60
    no_ttl = RedisState(STORE, redis_prefix)
    no_ttl.add_items("m", {"N1": {"title": "t"}})
    no_ttl.append_events("m", "u2", ["a"], cap=5)
    assert all(redis_client.ttl(k) == -1 for k in redis_client.keys(f"{redis_prefix}:*") if k != key)


def test_an_unreachable_redis_refuses_writes_and_fails_reads_open():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here
    degraded = []
    store = RedisStore(f"redis://127.0.0.1:{port}/0", 0.2, 60.0, degraded.append)
    state = RedisState(store, "p")
    with pytest.raises(StateUnavailable) as refused:
        state.append_events("m", "u1", ["a"], cap=5)
    assert refused.value.status == 503 and "nothing was written" in refused.value.message
    with pytest.raises(StateUnavailable):
        state.add_items("m", {"N1": {"title": "t"}})
    assert state.events("m", "u1") is None and state.added_items("m") == {} and state.added_seq("m") is None
    # The first failure opened the cache's circuit; every later call was answered without touching Redis.
    assert degraded == [True] and store.status == "degraded"


@pytest.mark.parametrize("env, words", [
    ({"RECSERVE_MAX_K": "abc"}, "RECSERVE_MAX_K='abc': Input should be a valid integer"),
    ({"RECSERVE_REDIS_URL": "http://me:secret@h:1"}, "RECSERVE_REDIS_URL='http://me:***@h:1': a Redis URL must"),
    ({"RECSERVE_REDIS_URL": "redis://h:port"}, "RECSERVE_REDIS_URL='redis://h:port': Port could not be cast"),
    ({"RECSERVE_API_KEY": ""}, "RECSERVE_API_KEY=<hidden>: Value should have at least 1 item"),
    ({"RECSERVE_LOG_LEVEL": "loud"}, "RECSERVE_LOG_LEVEL='loud': expected one of critical, error, warning"),
])
def test_a_setting_that_cannot_be_used_stops_serve_in_one_line_naming_it(tmp_path, monkeypatch, capsys, env, words):
    from recserve.cli import main

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["serve", "--artifacts", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err and "secret" not in err, err


def test_several_workers_without_redis_are_refused_in_one_line(tmp_path, monkeypatch, capsys):
    from recserve.cli import main

    monkeypatch.delenv("RECSERVE_REDIS_URL", raising=False)
    assert main(["serve", "--artifacts", str(tmp_path), "--workers", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("recserve: error: --workers 2 needs RECSERVE_REDIS_URL")


def test_the_images_uvicorn_command_stops_on_an_unusable_setting_in_one_line(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "RECSERVE_MAX_K": "abc", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run([sys.executable, "-c", "import service.app"], env=env, capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "RECSERVE_MAX_K='abc'" in done.stderr
