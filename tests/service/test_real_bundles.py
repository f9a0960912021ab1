"""The service on bundles written by the real exporter (training/export.py) from the real model classes:
/recommend must match torch's full_sort_scores."""
import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from service.app import create_app
from service.config import Settings

export = pytest.importorskip("training.export")
tiny = pytest.importorskip("tests.models.conftest")
BundleData = pytest.importorskip("training.bundle_data").BundleData

N = tiny.N_ITEMS
ITEMS = [f"item{i}" for i in range(1, N)]
HISTORY = ITEMS[3:15]  # 12 items: the service keeps the last max_history=10


def bundle_data(kind, model):
    if kind == "nrms":
        inputs = {"title_tokens": model.title_tokens[1:].numpy()}
        tokenizer = {"type": "word-regex", "title_size": 30, "vocab": {"a": 1}}
    else:
        inputs, tokenizer = {"item_idx": np.arange(1, N, dtype=np.int64)}, None
    return BundleData(items=ITEMS, item_inputs=inputs, max_history=10, tokenizer=tokenizer,
                      users=[f"u{i}" for i in range(1, 15)] if kind == "convncf" else None,
                      histories=None if kind == "convncf" else {"u1": HISTORY}, metrics={"test": {"ndcg@10": 0.2}})


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    out = tmp_path_factory.mktemp("real-artifacts")
    models = tiny.tiny_models()
    for kind, model in models.items():
        export.export_bundle(model, bundle_data(kind, model), out, parity=False)
    with TestClient(create_app(Settings(artifacts=out))) as client:
        yield client, models


@torch.no_grad()
def torch_scores(kind, model):
    window = torch.tensor([[ITEMS.index(i) + 1 for i in HISTORY[-10:]]])
    if kind == "convncf":
        batch = {"user": torch.tensor([1])}
    elif kind == "nrms":
        batch = {"history": window, "history_len": torch.tensor([10])}
    else:
        batch = {"item_seq": window, "seq_len": torch.tensor([10])}
    scores = model.full_sort_scores(model.user_vectors(batch))[0]  # raw dot products
    return torch.sigmoid(scores).numpy() if kind == "nrms" else scores.numpy()


@pytest.mark.parametrize("kind", ["convncf", "gru4recf", "bert4rec", "nrms"])
def test_recommend_matches_torch_full_sort(served, kind):
    client, models = served
    body = client.post("/recommend", json={"model": kind, "user_id": "u1", "k": 10, "exclude_history": False})
    assert body.status_code == 200, body.text
    scores = torch_scores(kind, models[kind])
    top = np.argsort(-scores[1:], kind="stable")[:10]
    got = body.json()["results"]
    assert np.allclose([r["score"] for r in got], scores[1:][top], atol=1e-4)
    assert [r["item_id"] for r in got] == [ITEMS[i] for i in top]
    info = next(m for m in client.get("/models").json() if m["name"] == kind)
    assert info["kind"] == kind and info["items"] == N - 1
