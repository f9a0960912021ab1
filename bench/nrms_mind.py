"""NRMS on MIND: quality against baselines, and speed.

    .venv/bin/python bench/nrms_mind.py --data ../shared/data/mind --lr 5e-4 --out bench/out/nrms_5e-4.json

Reports validation group AUC / MRR / nDCG@5 / nDCG@10 for random scores, click popularity, the untrained
model and NRMS trained with the defaults (best epoch by validation group AUC), plus training clicks/second
and news encoded/second. Run it alone: a second torch process on 2 cores distorts every figure.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from training.evaluate import impression_metrics
from training.train import DataOptions, prepare, run, train_config


def baseline_scores(task, kind: str, rng: np.random.Generator) -> list[np.ndarray]:
    imps = task.data.valid
    if kind == "random":
        scores = rng.random(len(imps.cand_items))
    else:  # click popularity in the training impressions
        train = task.data.train
        clicks = np.bincount(train.cand_items[train.cand_labels == 1], minlength=len(task.data.news))
        scores = clicks[imps.cand_items] + 1e-3 * rng.random(len(imps.cand_items))  # random tie-break
    return np.split(scores, imps.cand_indptr[1:-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/mind"))
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--word-vectors", default="glove")
    parser.add_argument("--out", type=Path, default=Path("bench/out/nrms.json"))
    args = parser.parse_args()
    opts = DataOptions(word_vectors=args.word_vectors)
    rng = np.random.default_rng(0)
    model, task, _ = prepare("nrms", args.data, opts, seed=2020)
    labels = np.split(task.data.valid.cand_labels, task.data.valid.cand_indptr[1:-1])
    report: dict = {"lr": args.lr, "epochs": args.epochs, "training_clicks": task.size}
    for kind in ("random", "popularity"):
        report[kind] = impression_metrics(labels, baseline_scores(task, kind, rng))
    model.eval()
    started = time.perf_counter()
    with torch.no_grad():
        n = len(model.encode_news())
    report["news_encoded_per_s"] = n / (time.perf_counter() - started)
    report["untrained"] = task.evaluate("valid")
    cfg = train_config("nrms", lr=args.lr, epochs=args.epochs, progress=False)
    started = time.perf_counter()
    result = run("nrms", args.data, args.out.parent / "artifacts", cfg, opts)
    report["train_seconds"] = time.perf_counter() - started
    train_seconds = sum(row["seconds"] for row in result.metrics["history"])
    report["training_clicks_per_s"] = task.size * len(result.metrics["history"]) / train_seconds
    report["trained"] = result.metrics["valid"]
    report["history"] = result.metrics["history"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps({k: v for k, v in report.items() if k != "history"}, indent=2))


if __name__ == "__main__":
    main()
