"""End to end over HTTP: parity with torch, the rank/recommend rules, every error status."""
import numpy as np
import pytest
import torch

from tests.service.bundles import MAX_HISTORY, NAMES
from tests.service.answers import ranking

TOL = 1e-4


def expected(model, user_vec, ids):
    matrix = model.item_matrix()
    index = {item: i for i, item in enumerate(model.items, start=1)}
    return model.expected_scores(user_vec, matrix[[index[i] for i in ids]])


def check(results, model, user_vec, ids):
    want = dict(zip(ids, expected(model, user_vec, ids)))
    got = {r["item_id"]: r["score"] for r in results}
    assert set(got) == set(want)
    assert max(abs(got[i] - want[i]) for i in got) < TOL
    assert [r["rank"] for r in results] == list(range(1, len(results) + 1))
    assert [r["score"] for r in results] == sorted(got.values(), reverse=True)


@pytest.mark.parametrize("name", NAMES)
def test_rank_matches_torch_and_reports_unknown(client, models, name):
    model = models[name]
    candidates = model.items[10:30] + ["nope"]
    body = client.post("/rank", json={"model": name, "user_id": "u3", "candidates": candidates}).json()
    assert body["model"] == name and body["version"] == model.version and body["unknown"] == ["nope"]
    user = model.expected_user(model.histories.get("u3"), user_id="u3")
    check(body["results"], model, user, model.items[10:30])


def test_rank_lists_each_repeated_candidate_once(client, models):
    model = models["gru4recf"]
    a, b, c = model.items[5:8]
    candidates = [a, "ghost", b, a, "zombie", "ghost", c, b]
    body = client.post("/rank", json={"model": "gru4recf", "user_id": "u3", "candidates": candidates}).json()
    assert sorted(r["item_id"] for r in body["results"]) == sorted([a, b, c])
    assert body["unknown"] == ["ghost", "zombie"]
    check(body["results"], model, model.expected_user(model.histories.get("u3"), user_id="u3"), [a, b, c])


@pytest.mark.parametrize("name", ["nrms", "gru4recf", "bert4rec"])
def test_history_wins_over_stored_history_and_is_truncated(client, models, name):
    model = models[name]
    history = model.items[40:48] + ["unknown-item"]  # 8 known: the last MAX_HISTORY are used
    body = client.post("/rank", json={"model": name, "user_id": "u1", "history": history,
                                      "candidates": model.items[:15]}).json()
    check(body["results"], model, model.expected_user(model.items[48 - MAX_HISTORY:48]), model.items[:15])
    alone = client.post("/rank", json={"model": name, "history": history, "candidates": model.items[:15]}).json()
    assert alone["results"] == body["results"]


@pytest.mark.parametrize("name", NAMES)
def test_recommend_full_catalog_top_k(client, models, name):
    model = models[name]
    body = client.post("/recommend", json={"model": name, "user_id": "u2", "k": 7, "exclude_history": False}).json()
    user = model.expected_user(model.histories.get("u2"), user_id="u2")
    scores = expected(model, user, model.items)
    top = np.argsort(-scores, kind="stable")[:7]
    assert [r["item_id"] for r in body["results"]] == [model.items[i] for i in top]
    assert np.allclose([r["score"] for r in body["results"]], scores[top], atol=TOL)


def test_convncf_recommend_runs_the_scorer_in_chunks(make_client, models):
    client = make_client(pairwise_chunk=7)  # 61 rows -> 9 scorer calls
    model = models["convncf"]
    body = client.post("/recommend", json={"model": "convncf", "user_id": "u5", "k": 60}).json()
    scores = expected(model, model.expected_user(user_id="u5"), model.items)
    assert [r["item_id"] for r in body["results"]] == [model.items[i] for i in np.argsort(-scores, kind="stable")]
    metrics = client.get("/metrics").text
    assert 'recserve_inference_seconds_count{graph="scorer",model="convncf"} 10.0' in metrics  # warm-up + 9


def scorer_calls(client) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith('recserve_inference_seconds_count{graph="scorer",model="convncf"}'):
            return float(line.split()[-1])
    return 0.0


def test_convncf_scores_each_user_item_pair_once(make_client, models):
    """Kept pairwise scores: a repeat /rank runs no scorer, /recommend scores only the rows not yet scored,
    and every answer equals the torch model's."""
    client = make_client(pairwise_chunk=1000)
    model, user = models["convncf"], models["convncf"].expected_user(user_id="u6")
    rank = {"model": "convncf", "user_id": "u6", "candidates": model.items[5:25]}
    first = client.post("/rank", json=rank).json()
    calls = scorer_calls(client)
    assert ranking(client.post("/rank", json=rank)) == ranking(first) and scorer_calls(client) == calls
    check(first["results"], model, user, model.items[5:25])
    body = client.post("/recommend", json={"model": "convncf", "user_id": "u6", "k": 60}).json()
    assert scorer_calls(client) == calls + 1
    scores = expected(model, user, model.items)
    assert [r["item_id"] for r in body["results"]] == [model.items[i] for i in np.argsort(-scores, kind="stable")]
    metrics = client.get("/metrics").text
    assert 'recserve_cache_requests_total{kind="score",result="hit"} 40.0' in metrics  # 20 + the 20 ranked
    assert 'recserve_cache_requests_total{kind="score",result="miss"} 61.0' in metrics  # 20 + 41 other rows (padding row 0 too)
    other = make_client(pairwise_score_cache_size=0)
    other.post("/rank", json=rank)
    other.post("/rank", json=rank)
    assert scorer_calls(other) == 3  # warm-up + one per request


@pytest.mark.parametrize("name", ["gru4recf", "nrms"])
def test_recommend_excludes_history_and_exclude_list(client, models, name):
    model = models[name]
    history = model.histories["u4"]
    plain = client.post("/recommend", json={"model": name, "user_id": "u4", "k": 60, "exclude_history": False})
    ranked = [r["item_id"] for r in plain.json()["results"]]
    assert len(ranked) == 60
    body = client.post("/recommend", json={"model": name, "user_id": "u4", "k": 5,
                                           "exclude": [ranked[0], "ghost"]}).json()
    want = [i for i in ranked if i not in set(history) | {ranked[0]}][:5]
    assert [r["item_id"] for r in body["results"]] == want and body["unknown"] == ["ghost"]


def test_recommend_k_larger_than_what_is_left(client, models):
    history = models["bert4rec"].items[:50]
    body = client.post("/recommend", json={"model": "bert4rec", "history": history, "k": 1000}).json()
    assert len(body["results"]) == 10


def test_models_health_and_metrics(client):
    models = client.get("/models").json()
    assert [m["name"] for m in models] == sorted(NAMES)
    nrms = next(m for m in models if m["name"] == "nrms")
    assert nrms["score"] == "probability" and nrms["items"] >= 60 and nrms["dimension"] == 8
    assert nrms["provider"].endswith("ExecutionProvider") and nrms["metrics"]["test"]["ndcg@10"] == 0.1
    assert client.get("/healthz").text == "ok"
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["cache"] == "in-process"
    client.post("/rank", json={"model": "nrms", "user_id": "u1", "candidates": ["N1"]})
    text = client.get("/metrics").text
    assert 'recserve_request_seconds_count{model="nrms",route="/rank",status="200"}' in text
    assert 'recserve_inference_seconds_count{graph="user_encoder",model="nrms"}' in text
    assert 'recserve_cache_requests_total{kind="user",result="miss"}' in text
    assert "recserve_cache_degraded 0.0" in text


# Unknown users are not errors, nor are histories of unknown items: they get the fallback ranking
# (tests/service/test_fallback.py).
BAD = [
    ({"model": "nrms", "user_id": "u1", "candidates": []}, "candidates"),
    ({"model": "nrms", "user_id": "u1", "candidates": ["N1"] * 1001}, "candidates"),
    ({"model": "nrms", "candidates": ["N1"]}, "user_id"),
    ({"model": "gru4recf", "history": ["i1"] * 51, "candidates": ["i1"]}, "history"),
    ({"model": "nrms", "user_id": "u1", "candidate": ["N1"]}, "candidates"),
    ({"model": "nrms", "user_id": 5, "candidates": ["N1"]}, "user_id"),
]


@pytest.mark.parametrize(("body", "field"), BAD)
def test_bad_rank_requests_are_422_naming_the_field(client, body, field):
    response = client.post("/rank", json=body)
    assert response.status_code == 422
    assert response.json()["field"] == field and field in response.json()["detail"]


def test_other_errors(client):
    assert client.post("/rank", json={"model": "nope", "user_id": "u1", "candidates": ["a"]}).status_code == 404
    r = client.post("/recommend", json={"model": "nrms", "user_id": "u1", "k": 1001})
    assert r.status_code == 422 and r.json()["field"] == "k"
    r = client.post("/recommend", json={"model": "nrms", "user_id": "u1", "k": 0})
    assert r.status_code == 422 and r.json()["field"] == "k"
    r = client.post("/rank", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422
    r = client.post("/items", json={"model": "bert4rec", "items": [{"item_id": "x", "title": "t"}]})
    assert r.status_code == 422 and "no tokenizer" in r.json()["detail"]
    r = client.post("/users/u1/events", json={"model": "convncf", "items": ["i1"]})
    assert r.status_code == 422 and r.json()["field"] == "model"
    assert client.get("/nowhere").status_code == 404


def test_api_key(make_client):
    client = make_client(api_key="s3cret")
    body = {"model": "nrms", "user_id": "u1", "candidates": ["N1"]}
    assert client.post("/rank", json=body).status_code == 401
    assert client.post("/rank", json=body, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.post("/rank", json=body, headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert client.post("/rank", json={"bad": 1}).status_code == 401  # the key is checked before the body
    recommend = {"model": "nrms", "user_id": "u1"}
    assert client.post("/recommend", json=recommend).status_code == 401
    assert client.post("/recommend", json=recommend, headers={"Authorization": "Bearer s3cret"}).status_code == 200
    for path in ("/items", "/users/u1/events", "/admin/reload"):
        assert client.post(path, json={}).status_code == 401
    assert client.get("/models").status_code == 401 and client.get("/metrics").status_code == 401
    assert client.get("/healthz").status_code == 200 and client.get("/readyz").status_code == 200


def test_no_models_is_503(make_client, tmp_path):
    client = make_client(artifacts=tmp_path)
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 503
    r = client.post("/rank", json={"model": "nrms", "user_id": "u1", "candidates": ["N1"]})
    assert r.status_code == 503 and "no model is loaded" in r.json()["detail"]


def test_openapi_documents_the_routes(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/rank", "/recommend", "/items", "/users/{user_id}/events", "/models", "/admin/reload"} <= set(paths)
    assert "stored history" in paths["/rank"]["post"]["description"]
    for path, field in (("/rank", "candidates"), ("/recommend", "k")):
        post = paths[path]["post"]
        assert field in post["requestBody"]["content"]["application/json"]["schema"]["properties"]
        assert "422" in post["responses"]
        assert post["responses"]["200"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/RankResponse"}


@pytest.mark.parametrize(("content", "headers", "message"), [
    (b'{"model": "nrms", "user_id": "u1", "candidates": ["N1"]}', {"content-type": "text/plain"}, "Content-Type"),
    (b"", {"content-type": "application/json"}, "Field required"),
    (b'{"model": "nrms", "candidates": [', {"content-type": "application/json"}, "Invalid JSON"),
    (b'["nrms"]', {"content-type": "application/json"}, "should be an object"),
])
def test_rank_bodies_that_are_not_json_objects_are_422_on_body(client, content, headers, message):
    r = client.post("/rank", content=content, headers=headers)
    assert r.status_code == 422 and r.json()["field"] == "body" and message in r.json()["detail"]
