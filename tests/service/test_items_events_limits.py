"""What a client can make the service keep in memory through /items and /users/{id}/events is bounded
(issue #19): events store only ids a model knows, for at most RECSERVE_MAX_EVENT_USERS users per model; /items
fields have a length limit and a model keeps at most RECSERVE_MAX_ADDED_ITEMS added items; encoding runs off
the event loop."""
from __future__ import annotations


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
    assert served.stored_history("u2") == [*models["bert4rec"].histories["u2"], *clicks, clicks[0]]
    for dropped in ("u1", "u3"):  # back to the bundle's history, and so to the bundle's answer
        assert served.stored_history(dropped) == models["bert4rec"].histories[dropped]
        request = {"model": "bert4rec", "user_id": dropped, "candidates": models["bert4rec"].items}
        assert client.post("/rank", json=request).json()["results"] == ranked[dropped]
