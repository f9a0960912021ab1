"""Graph weights kept outside the .onnx files (training/graph_weights.py): mapped from the bundle's verified
.npy files and run by onnxruntime in place. The test bundles move every table of 256 bytes or more out."""
import copy
import json

import numpy as np
import pytest
import torch

from bundle.contract import BundleError, sha256_file
from bundle.reader import load_bundle
from service.config import Settings
from service.metrics import Metrics
from service.model import load_model
from service.runtime import CPU, Graph


def _manifest(path):
    return json.loads((path / "manifest.json").read_text())


def test_the_tables_are_mapped_read_only_and_handed_to_onnxruntime_without_a_copy(models):
    bundle = load_bundle(models["bert4rec"].path)
    weights = bundle.graph_weights["user_encoder"]
    assert set(weights) == set(_manifest(bundle.path)["graphs"]["user_encoder"]["weights"]) and "emb.weight" in weights
    for array in weights.values():
        assert isinstance(array.base, np.memmap) and not array.flags.writeable
    graph = Graph("user_encoder", bundle.graphs["user_encoder"], (CPU,), weights=weights, folder=bundle.path)
    assert graph._weights["emb.weight"].data_ptr() == weights["emb.weight"].ctypes.data  # the mapped pages


def test_the_served_user_encoder_computes_with_the_table_in_the_file(artifacts, models):
    """Doubling the table in its .npy (hash updated) doubles it in what is served: the graph's bytes hold no
    copy of it."""
    path = next((artifacts / "bert4rec").glob("2026*"))
    manifest = _manifest(path)
    file = manifest["graphs"]["user_encoder"]["weights"]["emb.weight"]
    np.save(path / file, np.load(path / file) * 2)
    manifest["files"][file] = sha256_file(path / file)
    (path / "manifest.json").write_text(json.dumps(manifest))
    served = load_model(path, Settings(artifacts=artifacts, providers="cpu"), Metrics(), None, {})

    reference = copy.deepcopy(models["bert4rec"].user_encoder)
    with torch.no_grad():
        reference.emb.weight.mul_(2)
        expected = reference(torch.tensor([[3, 7, 9]]), torch.tensor([3]))[0].numpy()
        original = models["bert4rec"].user_encoder(torch.tensor([[3, 7, 9]]), torch.tensor([3]))[0].numpy()
    got = served.encode_user([3, 7, 9], None)
    assert np.allclose(got, expected, atol=1e-5) and not np.allclose(got, original, atol=1e-3)


def test_a_tampered_weights_file_is_refused(artifacts):
    path = next((artifacts / "gru4recf").glob("2026*"))
    file = _manifest(path)["graphs"]["user_encoder"]["weights"]["emb.weight"]
    with (path / file).open("r+b") as f:
        f.seek(-4, 2)
        f.write(b"\x00\x00\x80\x7f")
    with pytest.raises(BundleError, match=rf"{file}: sha256 mismatch"):
        load_bundle(path)


@pytest.mark.parametrize("weights", [{"emb.weight": "weights-missing.npy"}, {"emb.weight": "user_encoder.onnx"}, []])
def test_weights_must_name_listed_npy_files(artifacts, weights):
    path = next((artifacts / "bert4rec").glob("2026*"))
    manifest = _manifest(path)
    manifest["graphs"]["user_encoder"]["weights"] = weights
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=r"graph 'user_encoder': 'weights' must map initializer names to \.npy files"):
        load_bundle(path)


def test_a_table_of_the_wrong_shape_is_refused_naming_the_bundle(artifacts):
    path = next((artifacts / "bert4rec").glob("2026*"))
    manifest = _manifest(path)
    file = manifest["graphs"]["user_encoder"]["weights"]["emb.weight"]
    np.save(path / file, np.load(path / file)[:, :3].copy())
    manifest["files"][file] = sha256_file(path / file)
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="the graphs fail on a first input: .*Dimension mismatch"):
        load_model(path, Settings(artifacts=artifacts, providers="cpu"), Metrics(), None, {})
