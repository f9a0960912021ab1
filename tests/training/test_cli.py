"""`recserve export` and `recserve recommend` from the command line: where bundles go, and one-line errors."""
from pathlib import Path

import pytest
import torch

from tests.models.conftest import tiny_bundle_data, tiny_models
from training.bundle_data import save_bundle_data
from recserve.cli import main
from training.export import export_bundle


def write_checkpoint(run_dir: Path, kind: str = "bert4rec") -> Path:
    """A best.pt as `recserve train` leaves it: trained-model state beside its bundle_data/."""
    model = tiny_models()[kind]
    save_bundle_data(tiny_bundle_data(kind, model), run_dir / "bundle_data")
    checkpoint = run_dir / "best.pt"
    torch.save({"model": model.state_dict(), "kind": kind, "model_config": vars(model.cfg), "epoch": 0}, checkpoint)
    return checkpoint


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("recserve: error: "), err
    return lines[0]


def test_export_without_out_writes_beside_the_checkpoints_artifacts_not_the_cwd(tmp_path, monkeypatch, capsys):
    artifacts = tmp_path / "A"
    checkpoint = write_checkpoint(artifacts / "bert4rec" / "train")
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    assert main(["export", "--checkpoint", str(checkpoint)]) == 0
    out = capsys.readouterr().out
    bundle = Path(out.removeprefix("bundle: ").strip())
    assert out == f"bundle: {bundle}\n"
    assert bundle.parent == artifacts / "bert4rec" and (bundle / "manifest.json").is_file()
    assert (artifacts / "bert4rec" / "LATEST").read_text().strip() == bundle.name
    assert list(cwd.iterdir()) == []


def test_export_of_a_relative_checkpoint_path_leaves_the_cwds_artifacts_alone(tmp_path, monkeypatch, capsys):
    # The reported case: run from a folder whose ./artifacts holds another LATEST.
    write_checkpoint(tmp_path / "A" / "bert4rec" / "train")
    (tmp_path / "artifacts" / "bert4rec").mkdir(parents=True)
    (tmp_path / "artifacts" / "bert4rec" / "LATEST").write_text("other-version\n")
    monkeypatch.chdir(tmp_path)
    assert main(["export", "--checkpoint", "A/bert4rec/train/best.pt"]) == 0
    bundle = Path(capsys.readouterr().out.removeprefix("bundle: ").strip())
    assert bundle.parent == tmp_path / "A" / "bert4rec"
    assert (tmp_path / "artifacts" / "bert4rec" / "LATEST").read_text() == "other-version\n"
    assert [p.name for p in (tmp_path / "artifacts" / "bert4rec").iterdir()] == ["LATEST"]


@pytest.mark.parametrize("run_dir", ["loose", "A/gru4recf/train"], ids=["not-a-train-folder", "another-models-folder"])
def test_export_without_out_refuses_a_checkpoint_outside_the_train_layout(tmp_path, monkeypatch, capsys, run_dir):
    checkpoint = write_checkpoint(tmp_path / run_dir)
    before = sorted(tmp_path.rglob("*"))
    monkeypatch.chdir(tmp_path)
    assert main(["export", "--checkpoint", str(checkpoint)]) == 2
    line = one_error_line(capsys)
    assert "<artifacts>/bert4rec/train/ layout" in line and "--out" in line
    assert sorted(tmp_path.rglob("*")) == before  # nothing written, in the cwd or elsewhere


def test_export_with_out_still_writes_there(tmp_path, capsys):
    checkpoint = write_checkpoint(tmp_path / "loose")
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "B")]) == 0
    bundle = Path(capsys.readouterr().out.removeprefix("bundle: ").strip())
    assert bundle.parent == tmp_path / "B" / "bert4rec"


@pytest.fixture
def recommend_args(tmp_path):
    users = tmp_path / "users.txt"
    users.write_text("u1\n")

    def args(bundle, users=users):
        return ["recommend", "--bundle", str(bundle), "--users", str(users), "--out", str(tmp_path / "out.jsonl"),
                "--no-progress"]
    return args


def exported(artifacts: Path, kind: str = "gru4recf") -> Path:
    model = tiny_models()[kind]
    return export_bundle(model, tiny_bundle_data(kind, model), artifacts, parity=False)


def test_recommend_with_a_missing_bundle_path_is_one_line(tmp_path, recommend_args, capsys):
    assert main(recommend_args(tmp_path / "nope")) == 2
    assert one_error_line(capsys) == f"recserve: error: --bundle {tmp_path / 'nope'}: no such file or folder"


def test_recommend_with_a_folder_that_is_no_bundle_is_one_line(tmp_path, recommend_args, capsys):
    (tmp_path / "empty").mkdir()
    assert main(recommend_args(tmp_path / "empty")) == 2
    assert "not a bundle folder (no manifest.json) nor a model folder (no LATEST)" in one_error_line(capsys)


def test_recommend_with_a_corrupt_bundle_is_one_line(tmp_path, recommend_args, capsys):
    bundle = exported(tmp_path / "artifacts")
    (bundle / "item_ids.npy").write_text('["tampered"]')
    assert main(recommend_args(bundle)) == 2
    line = one_error_line(capsys)
    assert "item_ids.npy" in line and "sha256 mismatch" in line
    assert not (tmp_path / "out.jsonl").exists()


def test_recommend_with_a_latest_naming_no_version_is_one_line(tmp_path, recommend_args, capsys):
    model_dir = tmp_path / "artifacts" / "gru4recf"
    model_dir.mkdir(parents=True)
    (model_dir / "LATEST").write_text("gone\n")
    assert main(recommend_args(model_dir)) == 2
    assert "names 'gone', which is not a folder" in one_error_line(capsys)


def test_recommend_with_a_missing_users_file_is_one_line(tmp_path, recommend_args, capsys):
    bundle = exported(tmp_path / "artifacts")
    assert main(recommend_args(bundle, users=tmp_path / "nobody.txt")) == 2
    assert f"--users {tmp_path / 'nobody.txt'}: no such file" in one_error_line(capsys)


def test_recommend_on_a_good_bundle_still_writes_its_records(tmp_path, recommend_args, capsys):
    bundle = exported(tmp_path / "artifacts")
    assert main(recommend_args(bundle.parent)) == 0  # the model folder, through LATEST
    assert '"user_id": "u1"' in (tmp_path / "out.jsonl").read_text()


def test_a_multi_line_message_is_printed_on_one_line(tmp_path, recommend_args, monkeypatch, capsys):
    # onnxruntime's errors span lines; the loader puts them into its BundleError as they are.
    import service.batch
    from bundle.contract import BundleError

    def unloadable(path):
        raise BundleError(path, "onnxruntime cannot load a graph: [ONNXRuntimeError] : 10 : INVALID_GRAPH\n  node 3")

    monkeypatch.setattr(service.batch, "load_for_batch", unloadable)
    bundle = exported(tmp_path / "artifacts")
    assert main(recommend_args(bundle)) == 2
    assert one_error_line(capsys).endswith("INVALID_GRAPH node 3")


def test_export_carries_the_runs_metrics_into_the_manifest(tmp_path, capsys):
    import json

    checkpoint = write_checkpoint(tmp_path / "A" / "bert4rec" / "train")
    info = checkpoint.parent / "bundle_data" / "info.json"  # as bundle data saved before it kept metrics
    info.write_text(json.dumps({k: v for k, v in json.loads(info.read_text()).items() if k != "metrics"}))
    metrics = {"valid": {"ndcg@10": 0.25}, "test": {"ndcg@10": 0.5}}
    (checkpoint.parent / "metrics.json").write_text(json.dumps({**metrics, "best_epoch": 0, "history": []}))
    assert main(["export", "--checkpoint", str(checkpoint)]) == 0
    bundle = Path(capsys.readouterr().out.removeprefix("bundle: ").strip())
    assert json.loads((bundle / "manifest.json").read_text())["metrics"] == metrics


def test_saved_bundle_data_keeps_its_metrics(tmp_path):
    from training.bundle_data import load_bundle_data

    model = tiny_models()["bert4rec"]
    data = tiny_bundle_data("bert4rec", model)
    data.metrics = {"test": {"recall@10": 0.125}}
    save_bundle_data(data, tmp_path / "bundle_data")
    assert load_bundle_data(tmp_path / "bundle_data").metrics == data.metrics


@pytest.mark.parametrize("content", [b"20260101T000000Z-1234abcd\n", b"", b"PK\x03\x04 not a zip"])
def test_export_of_a_file_that_is_no_checkpoint_is_one_line(tmp_path, capsys, content):
    latest = tmp_path / "A" / "bert4rec" / "LATEST"  # the reported case: LATEST instead of train/best.pt
    latest.parent.mkdir(parents=True)
    latest.write_bytes(content)
    assert main(["export", "--checkpoint", str(latest)]) == 2
    line = one_error_line(capsys)
    assert f"{latest} is not a checkpoint" in line and "train/best.pt" in line


def test_recommend_with_a_setting_it_cannot_use_is_one_line(tmp_path, recommend_args, capsys, monkeypatch):
    monkeypatch.setenv("RECSERVE_HISTORY_CAP_FACTOR", "many")
    assert main(recommend_args(exported(tmp_path / "artifacts"))) == 2
    assert "RECSERVE_HISTORY_CAP_FACTOR='many': Input should be a valid integer" in one_error_line(capsys)
