"""The service on bundles written by the real exporter (training/export.py) from the real model classes:
/recommend must match torch's full_sort_scores."""
import json

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

import tests.models.conftest as tiny
from models.registry import KINDS
from service.app import create_app
from service.batch import load_for_batch, recommend_users
from service.config import Settings
from training import export
from recserve.cli import main

N = tiny.N_ITEMS
ITEMS = tiny.ITEMS
HISTORY = ITEMS[3:15]  # 12 items: the service keeps the last max_history=10


def bundle_data(kind, model):
    return tiny.tiny_bundle_data(kind, model, histories={"u1": HISTORY})


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    out = tmp_path_factory.mktemp("real-artifacts")
    models = tiny.tiny_models()
    for kind, model in models.items():
        export.export_bundle(model, bundle_data(kind, model), out, parity=False)
    with TestClient(create_app(Settings(artifacts=out))) as client:
        yield client, models, out


@torch.no_grad()
def torch_scores(model):
    window = torch.tensor([[ITEMS.index(i) + 1 for i in HISTORY[-10:]]])
    batch = {"user_id": {"user": torch.tensor([1])},
             "news_vectors": {"history": window, "history_len": torch.tensor([10])},
             "sequence": {"item_seq": window, "seq_len": torch.tensor([10])}}[model.user_input]
    scores = model.full_sort_scores(model.user_vectors(batch))[0]  # raw dot products
    return torch.sigmoid(scores).numpy() if model.score_meaning == "probability" else scores.numpy()


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_recommend_matches_torch_full_sort(served, kind):
    client, models, _ = served
    body = client.post("/recommend", json={"model": kind, "user_id": "u1", "k": 10, "exclude_history": False})
    assert body.status_code == 200, body.text
    scores = torch_scores(models[kind])
    top = np.argsort(-scores[1:], kind="stable")[:10]
    got = body.json()["results"]
    assert np.allclose([r["score"] for r in got], scores[1:][top], atol=1e-4)
    assert [r["item_id"] for r in got] == [ITEMS[i] for i in top]
    info = next(m for m in client.get("/models").json() if m["name"] == kind)
    assert info["kind"] == kind and info["items"] == N - 1


@pytest.mark.parametrize("kind", ["convncf", "bert4rec", "nrms"])
def test_bulk_recommend_equals_the_api_per_user(served, kind):
    client, _, out = served
    users = ["u1", "u2", "u9"] if kind == "convncf" else ["u1"]
    records = list(recommend_users(load_for_batch(out / kind), users + ["nobody"], k=5, batch_size=2))
    assert [r["user_id"] for r in records] == users + ["nobody"]
    for record in records:  # "nobody" included: the fallback ranking, flagged, as the API gives it
        api = client.post("/recommend", json={"model": kind, "user_id": record["user_id"], "k": 5}).json()
        assert [r["item_id"] for r in record["results"]] == [r["item_id"] for r in api["results"]]
        assert np.allclose([r["score"] for r in record["results"]], [r["score"] for r in api["results"]], atol=1e-5)
        assert record.get("fallback") == api.get("fallback")
    assert records[-1]["fallback"] == ("recency_popularity" if kind == "nrms" else "popularity")
    assert [r["item_id"] for r in records[-1]["results"]] == [ITEMS[i - 1] for i in tiny.FALLBACK]


def test_recommend_cli_writes_json_lines(served, tmp_path):
    _, _, out = served
    users = tmp_path / "users.txt"
    users.write_text("u1\nstranger\n")
    result = tmp_path / "recs.jsonl"
    assert main(["recommend", "--bundle", str(out / "gru4recf"), "--users", str(users), "--k", "3",
                 "--out", str(result), "--no-progress"]) == 0
    lines = [json.loads(line) for line in result.read_text().splitlines()]
    assert [line["user_id"] for line in lines] == ["u1", "stranger"]
    assert [r["rank"] for r in lines[0]["results"]] == [1, 2, 3]
    assert set(HISTORY[-10:]).isdisjoint(r["item_id"] for r in lines[0]["results"])
    assert lines[1]["fallback"] == "popularity" and [r["item_id"] for r in lines[1]["results"]] == [
        ITEMS[i - 1] for i in tiny.FALLBACK[:3]]
