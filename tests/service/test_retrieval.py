"""/recommend through the bundle's nearest-neighbour index (issue #21): the same answers as the exact scan on a
small catalog at full recall settings, the size threshold, exclusions, items added while serving, and
ConvNCF's two stages."""
import numpy as np
import pytest

from service import retrieval

# Every test bundle has an index (tests/service/bundles.py). An expansion past the 60 items makes HNSW search
# every item: the index's answers are then exact, so any difference is the retrieval code's.
INDEXED = {"retrieval_min_items": 0, "index_expansion": 200, "rerank_candidates": 60}
EXACT = {"retrieval_min_items": 10**9}


def recommend(client, body):
    response = client.post("/recommend", json=body)
    assert response.status_code == 200, response.text
    return [(r["item_id"], round(r["score"], 5)) for r in response.json()["results"]]


@pytest.mark.parametrize("name", ["bert4rec", "gru4recf", "nrms", "convncf"])
def test_indexed_answers_equal_the_exact_scan(make_client, models, name):
    indexed, exact = make_client(**INDEXED), make_client(**EXACT)
    for user in ("u1", "u2", "u3"):
        for body in ({"k": 10}, {"k": 25, "exclude": models[name].items[:7]},
                     {"k": 60, "exclude_history": False}):
            request = {"model": name, "user_id": user, **body}
            got, want = recommend(indexed, request), recommend(exact, request)
            assert got == want and len(got) == len(want) > 0, (name, user, body)
            assert not set(body.get("exclude", ())) & {item for item, _ in got}


def test_the_threshold_decides_whether_the_index_is_searched(make_client, monkeypatch):
    calls = []
    real = retrieval.indexed
    monkeypatch.setattr(retrieval, "indexed", lambda *a, **k: calls.append(1) or real(*a, **k))
    body = {"model": "bert4rec", "user_id": "u1", "k": 5}
    recommend(make_client(retrieval_min_items=61), body)  # 60 bundle items: below, scanned
    assert calls == []
    recommend(make_client(retrieval_min_items=60), body)
    assert calls == [1]


def test_items_added_and_reposted_while_serving_are_found_with_the_index_on(make_client, models):
    """The index knows the bundle's vectors only: added items, and bundle items posted again with a new title,
    are scored exactly beside its answer."""
    indexed, exact = make_client(**INDEXED), make_client(**EXACT)
    news = [{"item_id": f"NEW{i}", "title": title} for i, title in enumerate(["w1 w1 w1", "w5 w9", "w2 w3 w4"])]
    news.append({"item_id": "N7", "title": "w1 w1 w2"})  # a bundle item, its vector replaced
    for client in (indexed, exact):
        assert client.post("/items", json={"model": "nrms", "items": news}).status_code == 200
    for user in ("u1", "u4", "u5"):
        request = {"model": "nrms", "user_id": user, "k": 64, "exclude_history": False}
        got = recommend(indexed, request)
        assert got == recommend(exact, request) and len(got) == 63  # 60 + 3 new, N7 once
        assert {item for item, _ in got} >= {"NEW0", "NEW1", "NEW2", "N7"}


def test_exclusions_that_eat_the_index_answer_still_give_k(make_client, models):
    """A request excluding most of the catalog: the index is asked again for more, then the scan answers."""
    client = make_client(retrieval_min_items=0)
    items = models["bert4rec"].items
    got = recommend(client, {"model": "bert4rec", "user_id": "u1", "k": 5, "exclude": items[:54],
                             "exclude_history": False})
    assert len(got) == 5 and {item for item, _ in got} <= set(items[54:])


def test_convncf_two_stages_keep_the_exact_top_when_the_first_stage_covers_the_catalog(make_client, models):
    """With N (rerank_candidates) at the catalog's size the first stage hands every item to the CNN: the same
    top k as scoring the catalog. With a small N the CNN re-ranks only the first stage's best by the dot product
    of the model's own embeddings."""
    body = {"model": "convncf", "user_id": "u2", "k": 10}
    assert recommend(make_client(**INDEXED), body) == recommend(make_client(**EXACT), body)
    small = recommend(make_client(**{**INDEXED, "rerank_candidates": 12}), body)
    model = models["convncf"]
    user = model.expected_user(user_id="u2")
    dots = (model.item_matrix()[1:] @ user).numpy()
    first_stage = {model.items[i] for i in np.argsort(-dots)[:12]} - set(model.histories.get("u2", []))
    assert len(small) == 10 and {item for item, _ in small} <= first_stage


def test_an_index_that_missed_its_recall_target_is_never_searched_and_models_says_so(make_client, artifacts,
                                                                                      monkeypatch):
    import json

    path = artifacts / "bert4rec" / (artifacts / "bert4rec" / "LATEST").read_text().strip() / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["index"].update(recall_at_10=0.2, recall_target=0.96)
    path.write_text(json.dumps(manifest))
    calls = []
    real = retrieval.indexed
    monkeypatch.setattr(retrieval, "indexed", lambda *a, **k: calls.append(1) or real(*a, **k))
    client = make_client(artifacts=artifacts, retrieval_min_items=0)
    recommend(client, {"model": "bert4rec", "user_id": "u1", "k": 5})
    assert calls == []  # scanned exactly
    recommend(client, {"model": "gru4recf", "user_id": "u1", "k": 5})
    assert calls == [1]  # a model whose index met its target is searched
    infos = {m["name"]: m["retrieval"] for m in client.get("/models").json()}
    assert infos["bert4rec"]["way"] == "exact" and infos["bert4rec"]["recall_at_10"] == 0.2
    assert "missed the recall target" in infos["bert4rec"]["reason"] and "ms of CPU" in infos["bert4rec"]["reason"]
    assert infos["gru4recf"]["way"] == "index"  # these test bundles record no calibration
