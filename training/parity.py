"""Parity of an exported bundle with the torch model: each graph, and the composed ranking.

ONNX Runtime's outputs must match torch eager within `atol` on real-shaped random inputs and on the
bundle's own catalog, and the full-sort top-10 of every checked user must be the same ids.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from bundle.contract import GRAPHS, ITEM_INPUTS_FILE, ITEM_VECTORS_FILE
from models.base import RecModel
from training.bundle_data import ExportError

ATOL = 1e-4
ITEM_BATCH = 1024


class ParityError(ExportError):
    """The exported graphs do not compute what the torch model computes."""


def ort_session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run(session, inputs: dict[str, np.ndarray]) -> np.ndarray:
    return session.run(None, inputs)[0]


def close(name: str, onnx_out: np.ndarray, torch_out: torch.Tensor, atol: float) -> float:
    expected = torch_out.detach().cpu().numpy()
    if onnx_out.shape != expected.shape:
        raise ParityError(f"{name}: ONNX shape {onnx_out.shape} != torch shape {expected.shape}")
    diff = float(np.abs(onnx_out - expected).max()) if expected.size else 0.0
    if not diff <= atol:
        raise ParityError(f"{name}: ONNX and torch differ by {diff:.3g} (> {atol})")
    return diff


def user_inputs(model: RecModel, item_vectors: np.ndarray, rng: np.random.Generator,
                batch: int = 8, length: int = 50) -> dict[str, np.ndarray]:
    """Real-shaped random user-encoder inputs: ids, left-aligned sequences of varied length, or news vectors."""
    n_items = model.n_items
    lengths = rng.integers(1, length + 1, size=batch)
    lengths[0] = length
    if model.user_input == "user_id":
        return {"user_idx": rng.integers(1, model.cfg.n_users, size=batch)}
    items = rng.integers(1, n_items, size=(batch, length))
    mask = np.arange(length)[None, :] < lengths[:, None]
    if model.user_input == "sequence":
        return {"item_seq": np.where(mask, items, 0).astype(np.int64), "seq_len": lengths.astype(np.int64)}
    return {"history_vectors": (item_vectors[items] * mask[..., None]).astype(np.float32),
            "history_mask": mask.astype(np.float32)}


def catalog_scores(scorer, users: np.ndarray, items: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """Run the scorer graph for every (user, catalog item) pair, a chunk of items at a time."""
    out = []
    for start in range(0, len(items), chunk):
        part = np.broadcast_to(items[start : start + chunk][None], (len(users), *items[start : start + chunk].shape))
        out.append(run(scorer, {"user": users, "items": np.ascontiguousarray(part)}))
    return np.concatenate(out, axis=1)


def encode_catalog(bundle: Path, item_inputs: dict[str, np.ndarray]) -> np.ndarray:
    """The item vectors [N, D] of the whole catalog by the bundle's own item-encoder graph, as the service
    would compute them, in batches (one call over a 50k-news catalog would need tens of GB for attention)."""
    session = ort_session(bundle / "item_encoder.onnx")
    n = len(next(iter(item_inputs.values())))
    return np.concatenate([run(session, {k: v[i:i + ITEM_BATCH] for k, v in item_inputs.items()})
                           for i in range(0, n, ITEM_BATCH)]) if n else np.zeros((0, 0), np.float32)


@torch.no_grad()
def check_bundle_parity(model: RecModel, bundle: Path, atol: float = ATOL, seed: int = 0,
                        sample: int = 4096, item_atol: float | None = None) -> dict[str, float]:
    """Raise ParityError unless every graph, the bundle's item vectors and the composed ranking match torch.
    Items are checked on a sample of at most `sample` catalog rows (all of a small catalog). Returns the max
    diffs."""
    model = model.eval()
    rng = np.random.default_rng(seed)
    sessions = {part: ort_session(bundle / f"{part}.onnx") for part in GRAPHS}
    with np.load(bundle / ITEM_INPUTS_FILE, allow_pickle=False) as npz:
        item_inputs = {k: npz[k] for k in npz.files}
    catalog = np.load(bundle / ITEM_VECTORS_FILE, mmap_mode="r")  # row 0 = padding
    n = catalog.shape[0] - 1
    sample = min(sample, getattr(model, "parity_item_sample", None) or sample)  # a slow torch item encoder's
    rows = np.arange(n) if n <= sample else np.sort(rng.choice(n, sample, replace=False))
    diffs = {}

    batches = [{k: v[rows[i:i + ITEM_BATCH]] for k, v in item_inputs.items()} for i in range(0, len(rows), ITEM_BATCH)]
    onnx_items = np.concatenate([run(sessions["item_encoder"], b) for b in batches])
    torch_items = torch.cat([model.item_encoder(*[torch.from_numpy(v) for v in b.values()]) for b in batches])
    diffs["item_encoder"] = close("item_encoder", onnx_items, torch_items, item_atol or atol)
    diffs["item_vectors"] = close(ITEM_VECTORS_FILE, np.asarray(catalog[rows + 1]), torch_items, item_atol or atol)
    if item_atol:  # a quantised item encoder: the rest is checked on the bundle's own item vectors
        torch_items = torch.from_numpy(np.asarray(catalog[rows + 1]))
    if float(np.abs(catalog[0]).max(initial=0.0)) != 0.0:
        raise ParityError(f"{ITEM_VECTORS_FILE}: row 0 (padding) is not zeros")

    inputs = user_inputs(model, catalog, rng,
                         length=getattr(model.cfg, "max_seq_length", getattr(model.cfg, "his_size", 50)))
    onnx_users = run(sessions["user_encoder"], inputs)
    torch_users = model.user_encoder(*[torch.from_numpy(v) for v in inputs.values()])
    diffs["user_encoder"] = close("user_encoder", onnx_users, torch_users, atol)

    sub = np.asarray(catalog[rows + 1])  # the sampled catalog, for the scorer and the composed ranking
    candidates = rng.integers(0, len(sub), size=(len(onnx_users), 20))
    onnx_scores = run(sessions["scorer"], {"user": onnx_users, "items": sub[candidates]})
    torch_scores = model.scorer(torch.from_numpy(onnx_users), torch.from_numpy(sub[candidates]))
    diffs["scorer"] = close("scorer", onnx_scores, torch_scores, atol)

    # Composed: ONNX user -> the bundle's item vectors -> ONNX scorer vs torch end to end, over the sample.
    onnx_full = catalog_scores(sessions["scorer"], onnx_users, sub)
    torch_full = model.full_sort_scores(torch_users, torch.cat([torch.zeros_like(torch_items[:1]), torch_items]))[:, 1:]
    if model.score_meaning == "probability":
        torch_full = torch.sigmoid(torch_full)
    diffs["ranking"] = close("composed ranking", onnx_full, torch_full, atol)
    # The same top 10 up to near-ties: torch's scores of ONNX's top 10 are torch's own 10 best. (Comparing the
    # ids would fail whenever two items score within float noise of each other and swap places.)
    torch_full = torch_full.numpy()
    onnx_top = np.argsort(-onnx_full, axis=1, kind="stable")[:, :10]
    torch_top = np.argsort(-torch_full, axis=1, kind="stable")[:, :10]
    gap = np.abs(np.take_along_axis(torch_full, onnx_top, 1) - np.take_along_axis(torch_full, torch_top, 1))
    if gap.max() > atol:
        row = int(gap.max(axis=1).argmax())
        raise ParityError(f"full-sort top-10 differs between ONNX and torch (user row {row}): "
                          f"{onnx_top[row]} vs {torch_top[row]}")
    return diffs
