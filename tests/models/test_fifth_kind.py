"""A fifth model kind is one model file (tests/models/throwaway_mf.py), one registry entry and one test fixture:
with nothing else, it trains from the CLI, exports with parity, re-exports from its checkpoint and is served."""
import json

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from bundle.reader import load_bundle, resolve_latest
from models.registry import KINDS, recipe
from service.app import create_app
from service.config import Settings
from tests.models import throwaway_mf
from tests.models.conftest import TINY, tiny_bundle_data
from recserve.cli import main
from training.data.synthetic import write_synthetic_atomic
from training.export import export_bundle


@pytest.fixture
def fifth_kind(monkeypatch):
    monkeypatch.setitem(KINDS, "mf", "tests.models.throwaway_mf")  # the one registry entry
    monkeypatch.setitem(TINY, "mf", throwaway_mf.tiny)             # the one test fixture


def test_the_tiny_fixture_exports_with_parity(fifth_kind, tmp_path):
    model = TINY["mf"]()
    bundle = export_bundle(model, tiny_bundle_data("mf", model), tmp_path)  # parity-checked against torch
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert (manifest["model"], manifest["scorer"], manifest["user_input"]) == ("mf", "dot", "user_id")


def test_a_fifth_kind_trains_exports_and_serves(fifth_kind, tmp_path):
    # No capsys here: the app below gives the recserve logger a handler on the stderr of its time, which capsys
    # would close after this test.
    data = write_synthetic_atomic(tmp_path / "data", n_users=60, n_items=40, seed=1)
    out = tmp_path / "artifacts"
    assert main(["train", "--model", "mf", "--data", str(data), "--out", str(out), "--no-progress"]) == 0
    assert recipe("mf").defaults["epochs"] == 2
    metrics = json.loads((out / "mf" / "train" / "metrics.json").read_text())
    assert len(metrics["history"]) == 2  # the recipe's defaults were used
    first = resolve_latest(out / "mf")

    assert main(["export", "--checkpoint", str(out / "mf" / "train" / "best.pt"), "--out", str(out)]) == 0
    bundle = resolve_latest(out / "mf")
    assert bundle != first

    loaded = load_bundle(bundle)
    users, items = loaded.users.all(), loaded.items.all()
    state = torch.load(out / "mf" / "train" / "best.pt", weights_only=True)["model"]
    expected = (state["item_embedding.weight"][1:] @ state["user_embedding.weight"][1]).numpy()
    with TestClient(create_app(Settings(artifacts=out))) as client:
        got = client.post("/recommend", json={"model": "mf", "user_id": users[0], "k": 5, "exclude_history": False})
        assert got.status_code == 200, got.text
        info = next(m for m in client.get("/models").json() if m["name"] == "mf")
    top = np.argsort(-expected, kind="stable")[:5]
    assert [r["item_id"] for r in got.json()["results"]] == [items[i] for i in top]
    assert np.allclose([r["score"] for r in got.json()["results"]], expected[top], atol=1e-5)
    assert (info["kind"], info["scorer"], info["user_input"]) == ("mf", "dot", "user_id")
