"""NRMS end to end on synthetic MIND data: it learns, and the trained model exports with parity."""
import json

import pytest

from recserve.cli import main
from training.data.mind_synthetic import write_synthetic_mind
from training.parity import check_bundle_parity
from training.train import DataOptions, prepare, run, train_config


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    data = write_synthetic_mind(tmp_path_factory.mktemp("mind"), seed=1)
    out = tmp_path_factory.mktemp("artifacts")
    result = run("nrms", data, out, train_config("nrms", epochs=2, progress=False), DataOptions())
    return data, out, result


def test_short_training_beats_chance_on_group_auc(trained):
    _, _, result = trained
    assert result.metrics["valid"]["group_auc"] > 0.6
    assert result.metrics["history"][-1]["loss"] < result.metrics["history"][0]["loss"] + 1e-6


def test_untrained_model_is_near_chance(trained):
    data, _, _ = trained
    _, task, _ = prepare("nrms", data, DataOptions(), seed=5)
    task.model.eval()
    assert abs(task.evaluate("valid")["group_auc"] - 0.5) < 0.1


def test_trained_model_exports_with_parity(trained):
    _, _, result = trained
    manifest = json.loads((result.bundle / "manifest.json").read_text())
    assert manifest["scorer"] == "dot_sigmoid" and manifest["user_input"] == "news_vectors"
    assert manifest["metrics"]["valid"]["group_auc"] == result.metrics["valid"]["group_auc"]
    from bundle.reader import load_bundle
    histories = load_bundle(result.bundle).histories
    assert len(histories) and all(len(histories.get(u)) for u in histories.users.all())
    from training.loop import load_checkpoint
    from models.registry import build_model
    state = load_checkpoint(result.run_dir / "best.pt")
    model = build_model("nrms", state["model_config"])
    model.load_state_dict(state["model"])
    assert max(check_bundle_parity(model, result.bundle).values()) <= 1e-4


def test_run_writes_metrics_and_curves(trained):
    _, _, result = trained
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    assert set(metrics["valid"]) == {"group_auc", "mrr", "ndcg@5", "ndcg@10"}
    assert (result.run_dir / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_reexports_a_checkpoint(trained, capsys):
    _, out, result = trained
    assert main(["export", "--checkpoint", str(result.run_dir / "best.pt"), "--out", str(out)]) == 0
    bundle = capsys.readouterr().out.split("bundle: ")[1].strip()
    assert (out / "nrms" / "LATEST").read_text().strip() == bundle.rsplit("/", 1)[1]
