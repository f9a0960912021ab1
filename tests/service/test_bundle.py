"""Bundle loading: verification by sha256, LATEST resolution, clear refusals naming the file."""
import json

import pytest

from bundle.contract import BundleError
from bundle.reader import discover, load_bundle, resolve_latest


def test_load_reads_every_part(models):
    bundle = load_bundle(models["nrms"].path)
    assert bundle.model == "nrms" and bundle.dim == 8 and bundle.scorer == "dot_sigmoid"
    assert bundle.items[:2] == ["N1", "N2"] and bundle.item_inputs["title_tokens"].shape == (60, 6)
    assert bundle.tokenizer_path is not None and bundle.histories["u1"]
    assert load_bundle(models["convncf"].path).users[0] == "u1"


def test_discover_and_latest(artifacts):
    found = discover(artifacts)
    assert sorted(found) == ["bert4rec", "convncf", "gru4recf", "nrms"]
    assert resolve_latest(found["nrms"]).name == "20260101T000000Z-00000001"
    (artifacts / "nrms" / "LATEST").write_text("nope\n")
    with pytest.raises(BundleError, match="LATEST: names 'nope'"):
        resolve_latest(found["nrms"])
    assert discover(artifacts / "missing") == {}


def test_hash_mismatch_is_refused_naming_the_file(artifacts):
    path = next((artifacts / "gru4recf").glob("2026*"))
    with (path / "user_encoder.onnx").open("ab") as f:
        f.write(b"\0")
    with pytest.raises(BundleError, match=r"user_encoder\.onnx: sha256 mismatch"):
        load_bundle(path)


def test_missing_file_and_bad_manifest_are_refused(artifacts):
    path = next((artifacts / "bert4rec").glob("2026*"))
    (path / "items.json").unlink()
    with pytest.raises(BundleError, match=r"items\.json: listed in manifest.json but unreadable"):
        load_bundle(path)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["scorer"] = "cosine"
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="unknown scorer 'cosine'"):
        load_bundle(path)
