"""Users a model cannot score get the bundle's fallback ranking, flagged (docs/bundle.md, "Fallback ranking")."""
import io
import json

import numpy as np
import pytest

from bundle.contract import BundleError, sha256_bytes
from bundle.reader import load_bundle
from service.batch import load_for_batch, recommend_users
from service.fallback import Fallback
from tests.service.bundles import NAMES

KIND = {"nrms": "recency_popularity", "convncf": "popularity", "gru4recf": "popularity", "bert4rec": "popularity"}


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("user", [{"user_id": "stranger"}, {"user_id": "stranger", "history": []}])
def test_cold_rank_orders_the_candidates_by_the_fallback_flagged(client, models, name, user):
    model = models[name]
    unlisted = [i for i in model.items if i not in model.fallback]
    top = model.fallback
    candidates = [top[5], unlisted[-1], top[1], "nope", unlisted[0], top[0]]
    response = client.post("/rank", json={"model": name, **user, "candidates": candidates})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["fallback"] == KIND[name] and body["unknown"] == ["nope"]
    # the candidates the fallback ranks, in its order, then the others in request order
    assert [r["item_id"] for r in body["results"]] == [top[0], top[1], top[5], unlisted[-1], unlisted[0]]
    # score = 1 / place in the fallback, 0 for candidates it does not rank
    assert [r["score"] for r in body["results"]] == [1.0, 0.5, 1 / 6, 0.0, 0.0]
    assert [r["rank"] for r in body["results"]] == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("name", NAMES)
def test_cold_recommend_is_the_top_of_the_fallback_minus_exclusions(client, models, name):
    model = models[name]
    body = client.post("/recommend", json={"model": name, "user_id": "stranger", "k": 4,
                                           "exclude": [model.fallback[1], "nope"]}).json()
    assert body["fallback"] == KIND[name] and body["unknown"] == ["nope"]
    want = [model.fallback[i] for i in (0, 2, 3, 4)]
    assert [r["item_id"] for r in body["results"]] == want
    assert [r["score"] for r in body["results"]] == [1.0, 1 / 3, 1 / 4, 1 / 5]  # places keep counting the excluded
    whole = client.post("/recommend", json={"model": name, "user_id": "stranger", "k": 1000}).json()
    assert [r["item_id"] for r in whole["results"]] == model.fallback  # never past what the fallback ranks


@pytest.mark.parametrize("name", NAMES)
def test_known_users_get_the_models_answer_with_no_fallback_field(client, models, name):
    for path, extra in (("/rank", {"candidates": models[name].items[:5]}), ("/recommend", {"k": 3})):
        response = client.post(path, json={"model": name, "user_id": "u2", **extra})
        assert response.status_code == 200 and b"fallback" not in response.content


def test_convncf_with_a_history_but_no_known_id_gets_the_fallback_without_that_history(client, models):
    model = models["convncf"]
    body = client.post("/recommend", json={"model": "convncf", "history": model.fallback[:2], "k": 3}).json()
    assert body["fallback"] == "popularity" and [r["item_id"] for r in body["results"]] == model.fallback[2:5]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("user", [{}, {"user_id": "u2"}])
def test_a_history_of_which_nothing_is_known_is_a_cold_user_for_every_kind(client, models, name, user):
    """One behaviour for every kind: news models used to score the empty history (0.5 for every item, no flag),
    sequence models answered 422. ConvNCF scores a user it knows by id, whatever the history."""
    body = {"model": name, **user, "history": ["zz", "yy", "zz"]}
    ranked = client.post("/rank", json={**body, "candidates": models[name].fallback[:3][::-1]}).json()
    top = client.post("/recommend", json={**body, "k": 3}).json()
    for answer in (ranked, top):
        assert answer["unknown_history"] == ["zz", "yy"], answer
        scored_by_model = name == "convncf" and user
        assert ("fallback" in answer) != bool(scored_by_model), answer
    if "fallback" in top:
        assert [r["item_id"] for r in top["results"]] == models[name].fallback[:3]
        assert [r["item_id"] for r in ranked["results"]] == models[name].fallback[:3]


@pytest.mark.parametrize("name", NAMES)
def test_unknown_history_ids_are_listed_beside_a_models_answer(client, models, name):
    history = [models[name].items[0], "gone"]
    body = client.post("/recommend", json={"model": name, "user_id": "u2", "history": history, "k": 2}).json()
    assert "fallback" not in body and body["unknown_history"] == ["gone"]
    plain = client.post("/recommend", json={"model": name, "user_id": "u2", "k": 2}).json()
    assert "unknown_history" not in plain


def test_a_request_naming_no_user_is_still_422(client):
    for body in ({"model": "nrms", "candidates": ["N1"]}, {"model": "gru4recf", "history": [], "candidates": ["i1"]}):
        response = client.post("/rank", json=body)
        assert response.status_code == 422 and response.json()["field"] == "user_id"


def test_events_make_a_stranger_a_known_user(make_client):
    client = make_client()
    request = {"model": "gru4recf", "user_id": "newcomer", "k": 3}
    assert client.post("/recommend", json=request).json()["fallback"] == "popularity"
    assert client.post("/users/newcomer/events", json={"items": ["i1", "i2"]}).status_code == 200
    assert "fallback" not in client.post("/recommend", json=request).json()


def test_fresh_items_take_every_second_place_newest_first(make_client, models):
    client, model = make_client(fallback_fresh_items=2), models["nrms"]
    for item in ("OLDEST", "MIDDLE", "NEWEST"):
        assert client.post("/items", json={"model": "nrms", "items": [{"item_id": item, "title": "w1 w2"}]}
                           ).json()["added"] == [item]
    # re-posting a news the bundle knows replaces its vector: it stays where its popularity puts it
    client.post("/items", json={"model": "nrms", "items": [{"item_id": model.fallback[3], "title": "w4"}]})
    body = client.post("/recommend", json={"model": "nrms", "user_id": "stranger", "k": 6}).json()
    top = model.fallback
    assert [r["item_id"] for r in body["results"]] == [top[0], "NEWEST", top[1], "MIDDLE", top[2], top[3]]
    assert [r["score"] for r in body["results"]] == [1.0, 0.5, 1 / 3, 0.25, 0.2, 1 / 6]
    ranked = client.post("/rank", json={"model": "nrms", "user_id": "stranger",
                                        "candidates": ["OLDEST", top[2], "MIDDLE", "N-none"]}).json()
    # only the 2 newest are shown; OLDEST is ranked like any item the fallback does not list
    assert [(r["item_id"], r["score"]) for r in ranked["results"]] == [("MIDDLE", 0.25), (top[2], 0.2), ("OLDEST", 0.0)]


def test_fallback_order_and_places_agree_for_every_mix_of_popular_and_fresh():
    for n_popular in (0, 1, 3, 6):
        for added in (0, 1, 4, 9):
            for fresh in (0, 2, 5):
                place = np.zeros(11, dtype=np.int64)
                rows = np.arange(10, 10 - n_popular, -1)
                place[rows] = np.arange(1, n_popular + 1)
                fallback, size = Fallback("popularity", rows, place), 10 + added
                order = fallback.order(size, fresh)
                shown = min(fresh, added)
                assert sorted(order.tolist()) == sorted([*rows.tolist(), *range(size - shown + 1, size + 1)])
                assert fallback.places(order, size, fresh).tolist() == list(range(1, len(order) + 1))
                fresh_places = fallback.places(np.arange(size, 10, -1), size, fresh)[:shown]
                assert fresh_places.tolist() == [j + min(j, n_popular) for j in range(1, shown + 1)]


def strip_fallback(path):
    """Make `path` a bundle from before fallbacks existed."""
    manifest = json.loads((path / "manifest.json").read_text())
    del manifest["fallback"], manifest["files"]["fallback.npy"]
    (path / "fallback.npy").unlink()
    (path / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("name", ["nrms", "convncf"])
def test_a_bundle_without_a_fallback_answers_unknown_users_422_as_before(make_client, artifacts, name):
    strip_fallback(next((artifacts / name).glob("2026*")))
    client = make_client(artifacts=artifacts)
    response = client.post("/rank", json={"model": name, "user_id": "stranger", "candidates": ["N1", "i1"]})
    assert response.status_code == 422 and response.json()["field"] == "user_id"
    assert "unknown user 'stranger'" in response.json()["detail"]
    assert [r["fallback"] for r in client.get("/models").json() if r["name"] == name] == [None]
    record = next(recommend_users(load_for_batch(artifacts / name), ["stranger"]))
    assert "unknown user" in record["error"] and "results" not in record


def test_bulk_recommend_gives_unknown_users_the_fallback_flagged(bundles, models):
    model = models["bert4rec"]
    records = list(recommend_users(load_for_batch(bundles[0] / "bert4rec"), ["u1", "stranger"], k=3))
    assert "fallback" not in records[0] and len(records[0]["results"]) == 3
    assert records[1] == {"user_id": "stranger", "fallback": "popularity",
                          "results": [{"item_id": model.fallback[i], "score": 1 / (i + 1), "rank": i + 1}
                                      for i in range(3)]}


def write_fallback(path, rows, kind="popularity"):
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(rows))
    (path / "fallback.npy").write_bytes(buffer.getvalue())
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["fallback"], manifest["files"]["fallback.npy"] = kind, sha256_bytes(buffer.getvalue())
    (path / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize(("rows", "kind", "problem"), [
    ([3, 61], "popularity", r"fallback\.npy: indices must lie in 1\.\.60"),
    ([3, 3], "popularity", r"fallback\.npy: an index is listed twice"),
    ([[1, 2]], "popularity", r"fallback\.npy: expected a 1-D integer array"),
    ([1.0], "popularity", r"fallback\.npy: expected a 1-D integer array"),
    ([1, 2], "trending", r"manifest\.json: unknown fallback 'trending'"),
])
def test_a_bad_fallback_is_refused_naming_the_file(artifacts, rows, kind, problem):
    path = next((artifacts / "gru4recf").glob("2026*"))
    write_fallback(path, rows, kind)
    with pytest.raises(BundleError, match=problem):
        load_bundle(path)


def test_a_fallback_kind_without_its_file_is_refused(artifacts):
    path = next((artifacts / "gru4recf").glob("2026*"))
    manifest = json.loads((path / "manifest.json").read_text())
    del manifest["files"]["fallback.npy"]
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="'fallback' and a listed fallback.npy go together"):
        load_bundle(path)
