"""NRMS on MiniLM (plm_nrms) on MIND: the zero-shot cosine scorer and the trained model in the same run, the
int8 item encoder against fp32, and encoder speed (docs/benchmarks.md, "NRMS on MiniLM").

    flock /tmp/recserve-heavy.lock .venv/bin/python bench/plm_mind.py --data ../shared/data/mind \
        --out bench/out/plm_nrms.json

1. `recserve train --model plm_nrms` with the defaults, from a cold cache (the frozen vectors of every title are
   computed), timed end to end: read, encode, train, validate, export (ONNX + parity).
2. The zero-shot scorer, cosine(mean of the history's sentence-transformers vectors, candidate's), computed
   directly from the frozen vectors: it must equal the run's untrained ("initial") validation.
3. The exported item encoder, fp32, int8 and per-channel int8 (onnxruntime's quantize_dynamic), on every news of the
   validation impressions: validation group AUC of the trained user encoder on each, and titles/second.
Run it alone: a second process on 2 cores distorts every figure.
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from training.evaluate import impression_metrics
from training.data.mind import history_matrix
from training.parity import ort_session
from training.train import DataOptions, prepare, run, train_config


def zero_shot(task) -> dict:
    imps, frozen = task.data.valid, task.model.frozen()
    history, _ = history_matrix(imps, task.his_size)
    history = torch.from_numpy(history)
    counts = (history > 0).sum(1, keepdim=True).clamp(min=1)
    users = torch.nn.functional.normalize(frozen[history].sum(1) / counts, dim=1)
    rows = torch.from_numpy(np.repeat(np.arange(len(imps)), np.diff(imps.cand_indptr)))
    scores = (users[rows] * frozen[torch.from_numpy(imps.cand_items)]).sum(1).numpy()
    labels = np.split(imps.cand_labels, imps.cand_indptr[1:-1])
    return impression_metrics(labels, np.split(scores, imps.cand_indptr[1:-1]))


def encode_with(session, inputs: dict[str, np.ndarray], rows: np.ndarray, batch: int = 256) -> np.ndarray:
    """Item vectors of catalog rows (1-based news indices) with an ONNX item encoder, length-sorted batches."""
    lengths = inputs["attention_mask"][rows - 1].sum(1)
    order = rows[np.argsort(lengths, kind="stable")]
    out = {}
    for start in range(0, len(order), batch):
        part = order[start:start + batch] - 1
        width = int(inputs["attention_mask"][part].sum(1).max())
        vectors = session.run(None, {k: v[part, :width] for k, v in inputs.items()})[0]
        out.update(zip(order[start:start + batch].tolist(), vectors))
    return np.stack([out[r] for r in rows.tolist()])


def onnx_metrics(task, session, inputs) -> tuple[dict, float]:
    """Validation metrics with news vectors from an ONNX item encoder (every news the impressions name)."""
    imps, model = task.data.valid, task.model
    history, _ = history_matrix(imps, task.his_size)
    rows = np.unique(np.concatenate([history[history > 0], imps.cand_items]))
    started = time.perf_counter()
    vectors = encode_with(session, inputs, rows)
    per_s = len(rows) / (time.perf_counter() - started)
    news = torch.zeros(len(task.data.news), model.dim)
    news[torch.from_numpy(rows)] = torch.from_numpy(vectors)
    with torch.no_grad():
        users = model.user_vectors({"history": torch.from_numpy(history)}, news)
    cand = torch.from_numpy(imps.cand_items)
    owner = torch.from_numpy(np.repeat(np.arange(len(imps)), np.diff(imps.cand_indptr)))
    scores = (users[owner] * news[cand]).sum(1).numpy()
    labels = np.split(imps.cand_labels, imps.cand_indptr[1:-1])
    return impression_metrics(labels, np.split(scores, imps.cand_indptr[1:-1])), per_s


def one_title_ms(session, inputs, n: int = 200) -> dict:
    rows = np.random.default_rng(0).integers(0, len(inputs["input_ids"]), n)
    times = []
    for r in rows:
        width = int(inputs["attention_mask"][r].sum())
        feed = {k: v[r:r + 1, :width] for k, v in inputs.items()}
        started = time.perf_counter()
        session.run(None, feed)
        times.append((time.perf_counter() - started) * 1e3)
    return {"p50": float(np.percentile(times, 50)), "p99": float(np.percentile(times, 99))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/mind"))
    parser.add_argument("--out", type=Path, default=Path("bench/out/plm_nrms.json"))
    parser.add_argument("--keep-cache", action="store_true", help="reuse the frozen vectors of an earlier run")
    args = parser.parse_args()
    artifacts = args.out.parent / "artifacts"
    run_dir = artifacts / "plm_nrms" / "train"
    if not args.keep_cache and run_dir.exists():
        shutil.rmtree(run_dir)
    report: dict = {}
    started = time.perf_counter()
    result = run("plm_nrms", args.data, artifacts, train_config("plm_nrms", progress=False), DataOptions())
    report["train_seconds"] = time.perf_counter() - started  # read + encode + train + validate + export
    report["epoch_seconds"] = [row["seconds"] for row in result.metrics["history"]]
    report["initial"], report["trained"] = result.metrics["initial"], result.metrics["valid"]
    report["best_epoch"] = result.metrics["best_epoch"]
    report["history"] = result.metrics["history"]
    report["bundle"] = str(result.bundle)

    model, task, bundle_data = prepare("plm_nrms", args.data, DataOptions(cache_dir=run_dir), seed=2020)
    model.load_state_dict(torch.load(run_dir / "best.pt", weights_only=True)["model"])
    model.eval()
    report["zero_shot_cosine"] = zero_shot(task)

    from onnxruntime.quantization import QuantType, quantize_dynamic

    fp32 = result.bundle / "item_encoder.onnx"
    int8 = args.out.parent / "item_encoder.int8.onnx"
    quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8)
    int8_pc = args.out.parent / "item_encoder.int8_per_channel.onnx"
    quantize_dynamic(str(fp32), str(int8_pc), weight_type=QuantType.QInt8, per_channel=True)
    inputs = bundle_data.item_inputs
    for name, path in (("fp32", fp32), ("int8", int8), ("int8_per_channel", int8_pc)):
        session = ort_session(path)
        metrics, per_s = onnx_metrics(task, session, inputs)
        report[f"onnx_{name}"] = {"valid": metrics, "titles_per_s": per_s, "one_title_ms": one_title_ms(session, inputs),
                                  "mb": path.stat().st_size / 1e6}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps({k: v for k, v in report.items() if k != "history"}, indent=2))


if __name__ == "__main__":
    main()
