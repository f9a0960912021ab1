"""What a client can make the service keep in memory through /items and /users/{id}/events is bounded
(issue #19): events store only ids a model knows, for at most RECSERVE_MAX_EVENT_USERS users per model; /items
fields have a length limit and a model keeps at most RECSERVE_MAX_ADDED_ITEMS added items; encoding runs off
the event loop."""
from __future__ import annotations

import threading

import numpy as np

from service.catalog import Catalog
from service.model import ServedModel

HISTORY_MODELS = ("bert4rec", "gru4recf", "nrms")  # convncf scores users by id and keeps no history
WAIT_S = 30  # a deadline against hanging the suite, not a timing assertion


# ----------------------------------------------------------------------------------------------- events


def test_events_keep_only_ids_the_model_knows_and_report_the_others(make_client, models):
    client = make_client()
    registry = client.app.state.registry
    junk = "x" * 256
    r = client.post("/users/u1/events", json={"items": ["N3", "i4", junk, "i5", junk]})
    assert r.status_code == 200
    body = r.json()
    # per model: an nrms id is unknown to the id models and the other way round; repeats are listed once
    assert body["unknown"] == {"bert4rec": ["N3", junk], "gru4recf": ["N3", junk], "nrms": ["i4", junk, "i5"]}
    assert registry.get("nrms").events.get("u1") == ["N3"]
    assert registry.get("bert4rec").events.get("u1") == ["i4", "i5"]
    assert body["models"] == {"bert4rec": len(models["bert4rec"].histories["u1"]) + 2,
                              "gru4recf": len(models["gru4recf"].histories["u1"]) + 2,
                              "nrms": len(models["nrms"].histories["u1"]) + 1}
    one = client.post("/users/u1/events", json={"model": "nrms", "items": ["N4", "N4"]}).json()
    assert one["unknown"] == {"nrms": []} and registry.get("nrms").events.get("u1") == ["N3", "N4", "N4"]


def test_events_of_only_unknown_ids_change_nothing_and_create_no_user(make_client):
    client = make_client()
    registry = client.app.state.registry
    before = {name: len(registry.get(name).events) for name in HISTORY_MODELS}
    r = client.post("/users/ghost/events", json={"items": ["nope", "y" * 256]})
    assert r.status_code == 200
    assert r.json() == {"user_id": "ghost", "models": {name: 0 for name in HISTORY_MODELS},
                        "unknown": {name: ["nope", "y" * 256] for name in HISTORY_MODELS}}
    assert {name: len(registry.get(name).events) for name in HISTORY_MODELS} == before
    assert all(registry.get(name).events.get("ghost") is None for name in HISTORY_MODELS)
    rank = client.post("/rank", json={"model": "bert4rec", "user_id": "ghost", "candidates": ["i1"]})
    assert rank.status_code == 200 and rank.json()["fallback"] == "popularity"  # still a user it has never seen
    # a known user's stored history is left as the bundle has it
    assert client.post("/users/u2/events", json={"model": "gru4recf", "items": ["nope"]}).json()["models"] == {
        "gru4recf": len(client.app.state.registry.get("gru4recf").bundle.histories.get("u2"))}
    assert registry.get("gru4recf").events.get("u2") is None


def test_events_are_kept_for_at_most_max_event_users_least_recently_updated_dropped(make_client, models):
    client = make_client(max_event_users=3)
    served = client.app.state.registry.get("bert4rec")
    clicks = models["bert4rec"].items[40:42]
    ranked = {}
    for user in ("u1", "u2", "u3", "u4"):
        request = {"model": "bert4rec", "user_id": user, "candidates": models["bert4rec"].items}
        ranked[user] = client.post("/rank", json=request).json()["results"]  # the bundle's history
        assert client.post(f"/users/{user}/events", json={"model": "bert4rec", "items": clicks}).status_code == 200
    client.post("/users/u2/events", json={"model": "bert4rec", "items": clicks[:1]})  # u2 updated again: kept
    client.post("/users/u5/events", json={"model": "bert4rec", "items": clicks})  # drops u1, then u3
    assert len(served.events) == 3
    assert [served.events.get(u) is not None for u in ("u1", "u2", "u3", "u4", "u5")] == [
        False, True, False, True, True]
    assert served.catalog.ids_of(served.stored_history("u2")) == [*models["bert4rec"].histories["u2"], *clicks, clicks[0]]
    for dropped in ("u1", "u3"):  # back to the bundle's history, and so to the bundle's answer
        assert served.catalog.ids_of(served.stored_history(dropped)) == models["bert4rec"].histories[dropped]
        request = {"model": "bert4rec", "user_id": dropped, "candidates": models["bert4rec"].items}
        assert client.post("/rank", json=request).json()["results"] == ranked[dropped]


# ------------------------------------------------------------------------------------------------ items


def test_items_refuse_over_long_title_and_category(make_client):
    client = make_client()
    long_title = client.post("/items", json={"model": "nrms", "items": [{"item_id": "A", "title": "w1 " * 400}]})
    assert long_title.status_code == 422 and long_title.json()["field"] == "items.0.title"
    long_category = client.post("/items", json={"model": "nrms", "items": [
        {"item_id": "A", "title": "w1"}, {"item_id": "B", "title": "w2", "category": "c" * 101}]})
    assert long_category.status_code == 422 and long_category.json()["field"] == "items.1.category"
    assert "A" not in client.app.state.registry.get("nrms").catalog


def test_items_beyond_max_added_items_answer_429_and_add_nothing(make_client):
    client = make_client(max_added_items=3)
    served = client.app.state.registry.get("nrms")
    size = served.catalog.size

    def post(*ids: str):
        return client.post("/items", json={"model": "nrms", "items": [{"item_id": i, "title": "w1 w2"} for i in ids]})

    assert post("A", "B").json()["added"] == ["A", "B"]
    assert post("A", "B", "N1").json()["updated"] == ["A", "B", "N1"]  # a bundle item updated counts once (kept)
    assert post("A", "B", "N1").status_code == 200  # re-posting known added ids does not count twice
    refused = post("B", "C")
    assert refused.status_code == 429
    body = refused.json()
    assert body["field"] == "items"
    for part in ("3 added items", "1 new", "limit of 3", "RECSERVE_MAX_ADDED_ITEMS"):
        assert part in body["detail"], body["detail"]
    assert served.catalog.size == size + 2 and "C" not in served.catalog and "C" not in served.added
    rank = client.post("/rank", json={"model": "nrms", "user_id": "u1", "candidates": ["C"]}).json()
    assert rank["unknown"] == ["C"]


# ----------------------------------------------------------------------------------- encoding off the loop


class BlockingEncoder:
    """Stands in for ServedModel.encode_items: says when a call has started and waits until released."""

    def __init__(self, monkeypatch):
        self.started = threading.Semaphore(0)
        self.release = threading.Event()
        original = ServedModel.encode_items

        def encode(model, inputs, batch):
            self.started.release()
            assert self.release.wait(WAIT_S), "never released"
            return original(model, inputs, batch)

        monkeypatch.setattr(ServedModel, "encode_items", encode)

    def wait_started(self, n: int = 1) -> None:
        for _ in range(n):
            assert self.started.acquire(timeout=WAIT_S), "the encoder was never called"


def in_thread(fn, *args, **kwargs) -> tuple[threading.Thread, dict]:
    out: dict = {}
    thread = threading.Thread(target=lambda: out.update(response=fn(*args, **kwargs)), daemon=True)
    thread.start()
    return thread, out


def test_items_encode_off_the_event_loop(make_client, monkeypatch):
    """While /items encodes, the event loop still answers /healthz (it would wait for the encoding if it ran on
    the loop: the deadline below then fails the test)."""
    client = make_client()
    blocker = BlockingEncoder(monkeypatch)
    items = [{"item_id": f"NEW{k}", "title": f"w{k % 40 + 1} w2"} for k in range(1000)]
    posting, posted = in_thread(client.post, "/items", json={"model": "nrms", "items": items})
    try:
        blocker.wait_started()
        health, answered = in_thread(client.get, "/healthz")
        health.join(WAIT_S / 3)
        assert not health.is_alive(), "/healthz waited for /items' encoding"
        assert answered["response"].status_code == 200
        assert posting.is_alive() and "response" not in posted  # /items is still encoding
        catalog = client.app.state.registry.get("nrms").catalog
        assert catalog.size == 60 and catalog._added.shape[0] >= 1000  # grown off the loop too
    finally:
        blocker.release.set()
        posting.join(WAIT_S)
    assert posted["response"].status_code == 200 and len(posted["response"].json()["added"]) == 1000
    assert client.app.state.registry.get("nrms").catalog.size == 60 + 1000


def test_a_reserved_catalog_upserts_without_copying_its_matrix():
    catalog = Catalog.of(["a", "b"], np.ones((2, 3), np.float32))
    catalog.reserve(20)
    rows = catalog._added
    vectors = np.arange(15, dtype=np.float32).reshape(5, 3)
    assert catalog.upsert(["c", "a", "c", "d", "e"], vectors) == (["c", "d", "e"], ["a"])
    assert catalog._added is rows and catalog.size == 5 and catalog.generation == 1
    assert catalog.ids_of(range(1, 6)) == ["a", "b", "c", "d", "e"]
    expected = [[0, 0, 0], [3, 4, 5], [1, 1, 1], [6, 7, 8], [9, 10, 11], [12, 13, 14]]
    assert np.array_equal(catalog.matrix, expected)
    assert np.array_equal(catalog.vectors(np.array([5, 1, 0])), [expected[5], expected[1], expected[0]])
    user = np.array([1.0, -1.0, 2.0], dtype=np.float32)
    assert np.allclose(catalog.scores(user), np.asarray(expected, np.float32) @ user)
    assert catalog.extra_rows().tolist() == [1, 3, 4, 5]  # the re-posted bundle row and the added ones
    assert catalog.lookup(["e", "zz", "a"]) == ([5, 1], ["zz"])


def test_concurrent_items_calls_are_both_applied(make_client, models, monkeypatch):
    """Two /items calls encoding at once are each applied whole, each item with its own vector."""
    client = make_client()
    served = client.app.state.registry.get("nrms")
    blocker = BlockingEncoder(monkeypatch)

    def post(*ids: str):
        body = {"model": "nrms", "items": [{"item_id": i, "title": f"w{n + 1} w9"} for n, i in enumerate(ids)]}
        return in_thread(client.post, "/items", json=body)

    first, second = post("A", "B", "C"), post("D", "E")
    try:
        blocker.wait_started(2)  # both are past the first check and encoding
    finally:
        blocker.release.set()
    for thread, _ in (first, second):
        thread.join(WAIT_S)
    assert sorted(out["response"].status_code for _, out in (first, second)) == [200, 200]
    assert set(served.added) == {"A", "B", "C", "D", "E"} and served.catalog.size == 65
    assert sorted(served.catalog.ids_of(range(61, 66))) == ["A", "B", "C", "D", "E"]
    titles = {"A": "w1 w9", "B": "w2 w9", "C": "w3 w9", "D": "w1 w9", "E": "w2 w9"}
    want = models["nrms"].encode_titles(list(titles.values())).detach().numpy()
    got = served.catalog.vectors(served.catalog.lookup(list(titles))[0])
    assert np.allclose(got, want, atol=1e-5)


def test_the_cap_is_checked_again_after_encoding(make_client, monkeypatch):
    """Two calls that each fit but together do not: both pass the first check, and the one applied second is
    refused after its encoding."""
    client = make_client(max_added_items=1)
    served = client.app.state.registry.get("nrms")
    blocker = BlockingEncoder(monkeypatch)
    calls = [in_thread(client.post, "/items", json={"model": "nrms", "items": [{"item_id": i, "title": "w1"}]})
             for i in ("P", "Q")]
    try:
        blocker.wait_started(2)  # both passed the first check (0 + 1 <= 1) and are encoding
    finally:
        blocker.release.set()
    for thread, _ in calls:
        thread.join(WAIT_S)
    answers = sorted((out["response"] for _, out in calls), key=lambda r: r.status_code)
    assert [r.status_code for r in answers] == [200, 429]
    assert answers[1].json()["field"] == "items" and "limit of 1" in answers[1].json()["detail"]
    assert len(served.added) == 1 and served.catalog.size == 61
    assert set(served.added) | {answers[0].json()["added"][0]} == set(served.added)
