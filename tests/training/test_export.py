import errno
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from tests.models.conftest import ITEMS, tiny_bundle_data, tiny_models
from training.bundle_data import save_bundle_data
from bundle.contract import sha256_file
from models.registry import KINDS
from training.export import ExportError, export_bundle
from training.parity import check_bundle_parity
from training.train import export_checkpoint

bundle_data = tiny_bundle_data


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("artifacts")
    models = tiny_models()
    return out, models, {kind: export_bundle(m, bundle_data(kind, m), out) for kind, m in models.items()}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_bundle_layout_manifest_and_hashes(exported, kind):
    out, models, bundles = exported
    bundle = bundles[kind]
    assert (out / kind / "LATEST").read_text().strip() == bundle.name
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["model"] == kind and manifest["version"] == bundle.name
    assert set(manifest["graphs"]) == {"item_encoder", "user_encoder", "scorer"}
    model = models[kind]
    assert manifest["scorer"] == model.scorer_kind and manifest["user_input"] == model.user_input
    assert manifest["score"] == ("probability" if model.scorer_kind == "dot_sigmoid" else "raw")
    assert manifest["metrics"] == {"valid": {"ndcg@10": 0.1}}
    files = {p.name for p in bundle.iterdir()} - {"manifest.json"}
    assert set(manifest["files"]) == files
    for name, digest in manifest["files"].items():
        assert sha256_file(bundle / name) == digest
    for part in manifest["graphs"].values():
        graph = onnx.load(str(bundle / part["file"]))
        assert graph.opset_import[0].version >= 17
        onnx.checker.check_model(graph)
    assert not [p for p in (out / kind).iterdir() if p.name.startswith(".")]  # no temporary leftovers


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_index_effort_is_calibrated_on_the_bundles_own_users(exported, kind):
    """The manifest's search effort is the cheapest that found the target share of the exact top 10 for the
    bundle's users (here one history, or every id model's user), and the service's index loads with it."""
    from bundle.ann import EXPANSIONS, load_index

    _, models, bundles = exported
    info = json.loads((bundles[kind] / "manifest.json").read_text())["index"]
    users = models[kind].cfg.n_users - 1 if models[kind].user_input == "user_id" else 1
    assert info["recall_users"] == users and info["recall_at_10"] >= info["recall_target"] == 0.96
    assert info["expansion_search"] == EXPANSIONS[0]  # 39 items: the cheapest effort is exhaustive
    assert load_index(bundles[kind] / info["file"], info).expansion == info["expansion_search"]


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_graphs_match_torch_on_random_inputs(exported, kind):
    _, models, bundles = exported
    diffs = check_bundle_parity(models[kind], bundles[kind], seed=3)
    assert max(diffs.values()) <= 1e-4


def test_dynamic_axes_accept_other_batch_and_length(exported):
    _, models, bundles = exported
    session = ort.InferenceSession(str(bundles["bert4rec"] / "user_encoder.onnx"), providers=["CPUExecutionProvider"])
    seq = np.array([[3, 4, 5, 6, 7, 0, 0], [1, 0, 0, 0, 0, 0, 0], [2, 3, 0, 0, 0, 0, 0], [9, 9, 9, 9, 9, 9, 9]])
    lengths = np.array([5, 1, 2, 7])
    out = session.run(None, {"item_seq": seq, "seq_len": lengths})[0]
    expected = models["bert4rec"].user_encoder(torch.from_numpy(seq), torch.from_numpy(lengths))
    assert out.shape == (4, 65) and np.abs(out - expected.detach().numpy()).max() < 1e-4


def test_mismatched_id_map_is_refused_without_leaving_anything(tmp_path):
    model = tiny_models()["gru4recf"]
    data = bundle_data("gru4recf", model)
    data.items = ITEMS[:-3]
    with pytest.raises(ExportError, match="id map has 36 items but the model was built for 39"):
        export_bundle(model, data, tmp_path)
    assert not (tmp_path / "gru4recf").exists() or not any((tmp_path / "gru4recf").iterdir())


def test_missing_id_map_is_refused(tmp_path):
    model = tiny_models()["bert4rec"]
    data = bundle_data("bert4rec", model)
    data.items = []
    with pytest.raises(ExportError, match="no item id map"):
        export_bundle(model, data, tmp_path)


def test_convncf_needs_its_user_map(tmp_path):
    model = tiny_models()["convncf"]
    data = bundle_data("convncf", model)
    data.users = None
    with pytest.raises(ExportError, match="user id map"):
        export_bundle(model, data, tmp_path)


def test_a_model_with_weights_that_are_not_finite_is_refused(tmp_path):
    # A diverged model: every score it gives would be NaN, which the service would load all the same.
    model = tiny_models()["bert4rec"]
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    with pytest.raises(ExportError, match=r"bert4rec's weights are not finite \(.+\): training diverged"):
        export_bundle(model, bundle_data("bert4rec", model), tmp_path)
    assert not (tmp_path / "bert4rec").exists()


def test_a_full_disk_gives_a_clear_error_and_no_partial_bundle(tmp_path, monkeypatch):
    model = tiny_models()["bert4rec"]

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", full)
    with pytest.raises(ExportError, match="No space left on device"):
        export_bundle(model, bundle_data("bert4rec", model), tmp_path)
    assert list((tmp_path / "bert4rec").iterdir()) == []


def test_export_checkpoint_refuses_untrained_and_mismatched_checkpoints(tmp_path):
    model = tiny_models()["bert4rec"]
    run_dir = tmp_path / "train"
    save_bundle_data(bundle_data("bert4rec", model), run_dir / "bundle_data")
    untrained = run_dir / "untrained.pt"
    torch.save({"model": model.state_dict()}, untrained)
    with pytest.raises(ExportError, match="not a trained model checkpoint"):
        export_checkpoint(untrained, tmp_path / "out")
    wrong = run_dir / "wrong.pt"
    config = {**vars(model.cfg), "hidden_size": 32}
    torch.save({"model": model.state_dict(), "kind": "bert4rec", "model_config": config, "epoch": 0}, wrong)
    with pytest.raises(ExportError, match="does not match its model config"):
        export_checkpoint(wrong, tmp_path / "out")
    good = run_dir / "best.pt"
    torch.save({"model": model.state_dict(), "kind": "bert4rec", "model_config": vars(model.cfg), "epoch": 0}, good)
    bundle = export_checkpoint(good, tmp_path / "out")
    assert (bundle / "manifest.json").exists()
    (run_dir / "bundle_data" / "item_ids.npy").unlink()
    with pytest.raises(ExportError, match="no id map"):
        export_checkpoint(good, tmp_path / "out")


def test_the_fallback_ranking_is_exported_and_survives_a_re_export(exported, tmp_path):
    from bundle.reader import load_bundle
    from tests.models.conftest import FALLBACK

    out, models, bundles = exported
    for kind, path in bundles.items():
        bundle = load_bundle(path)
        assert bundle.fallback.tolist() == FALLBACK
        assert bundle.fallback_kind == ("recency_popularity" if kind in ("nrms", "plm_nrms") else "popularity")
    model, run_dir = models["bert4rec"], tmp_path / "train"
    save_bundle_data(bundle_data("bert4rec", model), run_dir / "bundle_data")
    good = run_dir / "best.pt"
    torch.save({"model": model.state_dict(), "kind": "bert4rec", "model_config": vars(model.cfg), "epoch": 0}, good)
    again = load_bundle(export_checkpoint(good, tmp_path / "out"))
    assert again.fallback.tolist() == FALLBACK and again.manifest["fallback"] == "popularity"


@pytest.mark.parametrize(("fallback", "problem"), [([3, 40], "indices must lie in 1..39"),
                                                    ([3, 3], "listed twice"), ([0], "indices must lie")])
def test_a_bad_fallback_ranking_is_refused(tmp_path, fallback, problem):
    model = tiny_models()["bert4rec"]
    data = bundle_data("bert4rec", model)
    data.fallback = np.array(fallback)
    with pytest.raises(ExportError, match=problem):
        export_bundle(model, data, tmp_path, parity=False)


def test_bundle_data_without_a_fallback_exports_a_bundle_without_one(tmp_path):
    model = tiny_models()["gru4recf"]
    data = bundle_data("gru4recf", model)
    data.fallback = None
    path = export_bundle(model, data, tmp_path, parity=False)
    manifest = json.loads((path / "manifest.json").read_text())
    assert "fallback" not in manifest and not (path / "fallback.npy").exists()


def test_large_weights_leave_the_graphs_as_npy_files_named_by_their_contents(tmp_path):
    """With the threshold low enough for a tiny model, its tables go to .npy files: listed and hashed, named
    by each graph as ONNX external data (loadable by path), written once when two graphs hold the same table,
    and parity (run by path, as any ONNX tool would) still holds."""
    model = tiny_models()["bert4rec"]
    bundle = export_bundle(model, bundle_data("bert4rec", model), tmp_path, external_min_bytes=1024)
    manifest = json.loads((bundle / "manifest.json").read_text())
    weights = {g: part.get("weights", {}) for g, part in manifest["graphs"].items()}
    table = model.item_embedding.weight.detach().numpy()  # [n_items + extra, hidden]: both encoders hold it
    files = [file for moved in weights.values() for file in moved.values()]
    assert files and all(file in manifest["files"] for file in files)
    shared = [f for f in set(files) if np.array_equal(np.load(bundle / f), table)]
    assert len(shared) == 1 and sum(f == shared[0] for f in files) == 2
    assert sorted(p.name for p in bundle.glob("weights-*.npy")) == sorted(set(files))
    for part in manifest["graphs"].values():
        graph = onnx.load(str(bundle / part["file"]), load_external_data=False)
        external = {t.name for t in graph.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL}
        assert external == set(part.get("weights", {}))
    assert check_bundle_parity(model, bundle, seed=1)["user_encoder"] <= 1e-4


def test_an_index_that_misses_its_recall_target_is_refused_unless_allowed(tmp_path, monkeypatch):
    """An untrained million-item catalog measured recall@10 0.20: exported silently, /recommend would serve it."""
    import training.index_recall

    low = {"expansion_search": 1024, "recall_at_10": 0.2, "recall_target": 0.96, "recall_users": 1}
    monkeypatch.setattr(training.index_recall, "calibrate", lambda *a, **k: low)
    model = tiny_models()["bert4rec"]
    with pytest.raises(ExportError, match=r"recall@10 0\.200 .* below the target 0\.96.*--allow-low-recall-index"):
        export_bundle(model, bundle_data("bert4rec", model), tmp_path)
    assert not (tmp_path / "bert4rec" / "LATEST").exists()
    bundle = export_bundle(model, bundle_data("bert4rec", model), tmp_path, allow_low_recall_index=True)
    assert json.loads((bundle / "manifest.json").read_text())["index"]["recall_at_10"] == 0.2
