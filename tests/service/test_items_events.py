"""Runtime changes: new news via /items, clicks via /users/{id}/events."""
import numpy as np

from service.cache import LocalStore


def test_new_item_is_rankable_and_recommendable_at_once(make_client, models):
    client, model = make_client(), models["nrms"]
    title = "w3 w7 w7 w12"
    r = client.post("/items", json={"model": "nrms", "items": [{"item_id": "FRESH", "title": title, "category": "x"}]})
    assert r.status_code == 200 and r.json()["added"] == ["FRESH"]
    body = client.post("/rank", json={"model": "nrms", "user_id": "u1", "candidates": ["FRESH", "N1"]}).json()
    assert body["unknown"] == []
    user = model.expected_user(model.histories["u1"])
    want = model.expected_scores(user, model.encode_titles([title]))[0]
    assert abs(next(r["score"] for r in body["results"] if r["item_id"] == "FRESH") - want) < 1e-4
    rec = client.post("/recommend", json={"model": "nrms", "user_id": "u1", "k": 100}).json()
    assert "FRESH" in [r["item_id"] for r in rec["results"]]
    # a history may now name it, and re-posting it replaces its vector
    assert client.post("/rank", json={"model": "nrms", "history": ["FRESH"], "candidates": ["N2"]}).status_code == 200
    again = client.post("/items", json={"model": "nrms", "items": [{"item_id": "FRESH", "title": "w1"}]}).json()
    assert again["updated"] == ["FRESH"] and again["added"] == []
    assert client.get("/models").json()[-1]["items"] == 61


def test_replacing_a_history_item_changes_the_cached_user_vector(make_client, models, redis_prefix):
    """NRMS users are encoded from item vectors: re-posting an item of the history must not leave the old
    user vector in the near cache or in Redis."""
    client, model = make_client(redis_url="redis://127.0.0.1:6379/0", cache_prefix=redis_prefix), models["nrms"]
    history, candidates = model.items[:4], model.items[10:20]
    request = {"model": "nrms", "history": history, "candidates": candidates}
    before = client.post("/rank", json=request).json()["results"]
    title = "w2 w2 w9"
    assert client.post("/items", json={"model": "nrms", "items": [{"item_id": history[1], "title": title}]}).json()[
        "updated"] == [history[1]]
    after = {r["item_id"]: r["score"] for r in client.post("/rank", json=request).json()["results"]}
    assert after != {r["item_id"]: r["score"] for r in before}
    matrix = model.item_matrix().clone()
    matrix[2] = model.encode_titles([title])[0]
    user = model.expected_user(history, matrix=matrix)
    want = model.expected_scores(user, matrix[11:21])
    assert np.allclose([after[i] for i in candidates], want, atol=1e-4)


def test_events_change_the_next_answer_and_drop_the_cached_vector(make_client, models):
    client, model = make_client(), models["gru4recf"]
    store: LocalStore = client.app.state.store
    registry = client.app.state.registry
    request = {"model": "gru4recf", "user_id": "u6", "candidates": model.items}
    before = client.post("/rank", json=request).json()["results"]
    served = registry.get("gru4recf")
    window = [model.items.index(i) + 1 for i in model.histories["u6"][-5:]]  # bundle rows
    old_key = client.app.state.ranker.user_key(served, "u6", window)
    assert store.get_many([old_key])[0] is not None
    clicks = model.items[50:53]
    r = client.post("/users/u6/events", json={"items": clicks})
    assert r.status_code == 200 and r.json()["models"]["gru4recf"] == len(model.histories["u6"]) + 3
    assert "convncf" not in r.json()["models"]
    assert store.get_many([old_key])[0] is None
    after = client.post("/rank", json=request).json()["results"]
    assert after != before
    want = model.expected_user(model.histories["u6"] + clicks)
    got = {x["item_id"]: x["score"] for x in after}
    scores = model.expected_scores(want, model.item_matrix()[1:])
    assert np.allclose([got[i] for i in model.items], scores, atol=1e-4)


def test_events_for_a_new_user_create_a_history(make_client, models):
    client = make_client()
    request = {"model": "bert4rec", "user_id": "newbie", "candidates": ["i1", "i2"]}
    assert client.post("/rank", json=request).json()["fallback"] == "popularity"  # a stranger until now
    client.post("/users/newbie/events", json={"model": "bert4rec", "items": ["i9", "i10"]})
    response = client.post("/rank", json=request)
    assert response.status_code == 200 and "fallback" not in response.json()


def test_local_store_lru_and_expiry():
    store = LocalStore(size=2)
    store.set_many([("a", b"1"), ("b", b"2")], ttl=None)
    store.get_many(["a"])
    store.set_many([("c", b"3")], ttl=None)  # evicts b, the least recently used
    assert store.get_many(["a", "b", "c"]) == [b"1", None, b"3"]
    store.set_many([("d", b"4")], ttl=-1)  # already expired
    assert store.get_many(["d"]) == [None]
