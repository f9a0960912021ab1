"""Export a trained model as a bundle: three ONNX graphs + manifest + plain data files (docs/bundle.md).

The bundle is written to a hidden temporary folder beside its final place, parity-checked against torch
eager with ONNX Runtime, hashed, and renamed into place; `LATEST` is replaced last. Any failure removes the
temporary folder, so a reader never sees half a bundle.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import time
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch

from bundle.ann import INDEX_FILE, build_index
from bundle.contract import ITEM_VECTORS_FILE, LATEST_FILE, OPSET, write_manifest
from bundle.data import BundleData, fallback_problem, write_data_files, write_item_vectors
from models.base import RecModel
from models.registry import config_dict
from training.bundle_data import ExportError
from training.graph_weights import EXTERNAL_MIN_BYTES, externalize
from training.index_recall import calibrate_index


def weights_hash(model: RecModel) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def nonfinite_weights(model: RecModel) -> list[str]:
    """The parameters holding NaN or infinity: a diverged model, whose every score would be NaN."""
    return [name for name, p in model.named_parameters() if not torch.isfinite(p).all()]


def validate(model: RecModel, data: BundleData) -> None:
    bad = nonfinite_weights(model)
    if bad:  # caught here, not by the parity check's "differ by nan" further on
        raise ExportError(f"{model.kind}'s weights are not finite ({', '.join(bad[:3])}"
                          f"{', ...' if len(bad) > 3 else ''}): training diverged; train again with a lower --lr")
    n_items = model.n_items - 1
    if not data.items:
        raise ExportError("the bundle has no item id map (items is empty)")
    if len(data.items) != n_items:
        raise ExportError(f"id map has {len(data.items)} items but the model was built for {n_items}: "
                          "checkpoint and data do not match")
    for name, array in data.item_inputs.items():
        if len(array) != n_items:
            raise ExportError(f"item input {name!r} has {len(array)} rows, expected {n_items}")
    if model.user_input == "user_id":
        n_users = model.cfg.n_users - 1
        if data.users is None or len(data.users) != n_users:
            raise ExportError(f"{model.kind} scores users by id and needs a user id map of {n_users} users, got "
                              f"{'none' if data.users is None else len(data.users)}")
    if data.fallback is not None:
        problem = fallback_problem(np.asarray(data.fallback), data.fallback_kind, n_items)
        if problem:
            raise ExportError(f"fallback ranking: {problem}")


def export_graph(part, path: Path) -> dict:
    names = list(part.inputs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about shape-dependent Python values
        torch.onnx.export(part.module, tuple(part.inputs.values()), str(path), input_names=names,
                          output_names=[part.output], dynamic_axes=part.dynamic_axes, opset_version=OPSET,
                          dynamo=False)
    graph = onnx.load(str(path))
    onnx.checker.check_model(graph)
    return describe_graph(graph, path.name)


def describe_graph(graph: onnx.ModelProto, file: str) -> dict:
    def tensors(values):
        out = []
        for v in values:
            t = v.type.tensor_type
            dims = [d.dim_param or d.dim_value for d in t.shape.dim]
            out.append({"name": v.name, "dtype": onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name, "shape": dims})
        return out

    return {"file": file, "inputs": tensors(graph.graph.input), "outputs": tensors(graph.graph.output)}


INT8 = "int8 dynamic, per channel"  # the manifest's word for a quantised item encoder
INT8_ATOL = 0.05  # the most an int8 item encoder's vector element may differ from torch's (they are ~0.05 in size)


def quantize_item_encoder(path: Path) -> None:
    """Replace the item encoder graph by its int8 dynamically quantised form (onnxruntime's quantize_dynamic,
    int8 weights per output channel). For text encoders (plm_nrms): on MIND it kept validation AUC within 0.0003
    of fp32 (docs/benchmarks.md, 2b), per tensor it lost 0.0055."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantized = path.with_name(path.stem + ".int8.onnx")
    quantize_dynamic(str(path), str(quantized), weight_type=QuantType.QInt8, per_channel=True)
    quantized.replace(path)


def export_bundle(model: RecModel, data: BundleData, artifacts: str | Path, *, name: str | None = None,
                  parity: bool = True, int8_item_encoder: bool = False,
                  external_min_bytes: int = EXTERNAL_MIN_BYTES, allow_low_recall_index: bool = False) -> Path:
    """Write `artifacts/<name>/<version>/` and point `artifacts/<name>/LATEST` at it. Returns the bundle dir.
    `int8_item_encoder`: ship the item encoder quantised to int8 (`quantize_item_encoder`); the catalog's
    vectors are then that graph's, as /items will compute, and parity allows its rounding.
    `external_min_bytes`: graph initializers of this size or more go to .npy files (training/graph_weights.py).
    `allow_low_recall_index`: write the bundle even if its item index misses its recall target (the service
    then scans exactly; training/index_recall.py), instead of refusing it.
    The model is moved to the CPU first (in place): the graphs are traced from CPU example inputs and
    parity-checked against CPU eager, so a bundle's graphs are the same whatever device trained the model."""
    model = model.cpu().eval()
    validate(model, data)
    name = name or model.kind
    # The short hash covers the weights and the moment, so re-exporting the same weights gets a new version.
    now = time.time_ns()
    digest = hashlib.sha256(f"{weights_hash(model)}:{now}".encode()).hexdigest()[:8]
    version = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now / 1e9)) + "-" + digest
    root = Path(artifacts) / name
    final, tmp = root / version, root / f".tmp-{version}-{os.getpid()}"
    try:
        root.mkdir(parents=True, exist_ok=True)
        if final.exists():
            raise ExportError(f"bundle {final} already exists")
        tmp.mkdir()
        graphs = {part_name: export_graph(part, tmp / f"{part_name}.onnx")
                  for part_name, part in model.onnx_parts().items()}
        write_data_files(data, tmp)
        if int8_item_encoder:
            quantize_item_encoder(tmp / "item_encoder.onnx")
        for graph in graphs.values():
            weights = externalize(tmp / graph["file"], external_min_bytes)
            if weights:
                graph["weights"] = weights
        from training.parity import check_bundle_parity, encode_catalog  # onnxruntime, imported when needed

        # The catalog's vectors by the graph the service runs, so it never encodes the catalog at start-up,
        # and the nearest-neighbour index over them that /recommend uses for large catalogs.
        write_item_vectors(tmp, encode_catalog(tmp, data.item_inputs))
        vectors = np.load(tmp / ITEM_VECTORS_FILE, mmap_mode="r")
        index = calibrate_index(tmp, data, model.user_input, vectors, build_index(vectors, tmp / INDEX_FILE),
                                allow_low_recall_index)
        if parity:
            check_bundle_parity(model, tmp, item_atol=INT8_ATOL if int8_item_encoder else None)
        quantized = {"item_encoder_weights": INT8} if int8_item_encoder else {}
        write_manifest(tmp, {**_manifest(model, data, name, version, now, graphs), "index": index, **quantized})
        tmp.rename(final)
        latest_tmp = root / f".{LATEST_FILE}-{os.getpid()}"
        latest_tmp.write_text(version + "\n")
        latest_tmp.replace(root / LATEST_FILE)
        return final
    except OSError as err:
        raise ExportError(f"could not write bundle under {root}: {err}") from err
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _manifest(model: RecModel, data: BundleData, name: str, version: str, now_ns: int, graphs: dict) -> dict:
    dim = graphs["item_encoder"]["outputs"][0]["shape"][-1]
    return {
        "name": name,
        "model": model.kind,
        "version": version,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now_ns / 1e9)),
        "dim": dim,
        "score": model.score_meaning,
        "scorer": model.scorer_kind,
        "user_input": model.user_input,
        "max_history": data.max_history,
        "n_items": len(data.items),
        "config": config_dict(model),
        "metrics": data.metrics,
        "training": data.training,
        "data_fingerprint": data.data_fingerprint,
        "graphs": graphs,
        # Only with a fallback file: a bundle without one answers 422 for users its model cannot score.
        **({"fallback": data.fallback_kind} if data.fallback is not None else {}),
    }
