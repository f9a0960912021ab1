"""Ids cannot collide in the cache and cannot carry control characters (issue: a "\\x1f" in an added item's id
made a one-item history share the cache key of a two-item history, poisoning other users' vectors)."""
import pytest
from redis.crc import key_slot

from service.cache import Keys

KEYS = Keys("recserve", "nrms", "20260101T000000Z-00000001")


def test_the_poisoning_pair_gets_different_keys():
    assert KEYS.user(None, ["N55528\x1fN19639"]) != KEYS.user(None, ["N55528", "N19639"])
    assert KEYS.user("u1", ["a\x1fb"]) != KEYS.user("u1", ["a", "b"])
    # the other separators of the old encoding: the generation suffix and the user id
    assert KEYS.user(None, ["a\x1e1"]) != KEYS.user(None, ["a"], generation=1)
    assert KEYS.user("u:1", ["x"]) != KEYS.user("u", ["1:x"])
    assert KEYS.user(None, ["x"]) != KEYS.user("-", ["x"])
    # windows mix bundle rows (ints) and added items' ids (strings): never alike
    assert KEYS.user("u1", [1, 2]) != KEYS.user("u1", ["1", "2"])


def test_model_and_version_cannot_run_into_each_other():
    assert Keys("p", "a:b", "c").user("u", ["i"]) != Keys("p", "a", "b:c").user("u", ["i"])


def test_users_spread_over_the_cluster():
    user_slots = {key_slot(KEYS.user(f"U{i}", ["N1", "N2"]).encode()) for i in range(1000)}
    assert len(user_slots) > 900
    anonymous = {key_slot(KEYS.user(None, [f"N{i}"]).encode()) for i in range(1000)}
    assert len(anonymous) > 900
    assert len({key_slot(KEYS.user("U1", [f"N{i}"]).encode()) for i in range(50)}) == 1  # a user's keys: one slot


BAD = "N1\x1fN2"


@pytest.mark.parametrize("path,body,field", [
    ("/rank", {"model": "bert4rec", "user_id": "u1", "candidates": ["i1", BAD]}, "candidates.1"),
    ("/rank", {"model": "bert4rec", "history": [BAD], "candidates": ["i1"]}, "history.0"),
    ("/rank", {"model": "bert4rec", "user_id": "u\x00", "candidates": ["i1"]}, "user_id"),
    ("/recommend", {"model": "bert4rec", "user_id": "u1", "exclude": ["i\n"]}, "exclude.0"),
    ("/items", {"model": "nrms", "items": [{"item_id": BAD, "title": "t"}]}, "items.0.item_id"),
    ("/users/u1/events", {"model": "nrms", "items": ["n\u2028"]}, "items.0"),
    ("/users/u%1F1/events", {"model": "nrms", "items": ["n1"]}, "user_id"),  # percent-encoded in the path
])
def test_control_characters_in_ids_are_refused_naming_the_field(client, path, body, field):
    r = client.post(path, json=body)
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field


def test_ordinary_unicode_ids_are_accepted(client):
    r = client.post("/rank", json={"model": "bert4rec", "history": ["ünïcode-ß 項目"], "candidates": ["i1"]})
    assert r.status_code == 200 and r.json()["unknown_history"] == ["ünïcode-ß 項目"]  # valid, just unknown
