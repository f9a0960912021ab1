"""Ranking metrics in numpy, for `recserve evaluate` (service/ imports no torch). The impression metrics are
MIND's, from bundle/metrics.py as training/evaluate.py's (tests/service/feedback/test_metrics.py holds them equal):
per impression group AUC, MRR, nDCG@5, nDCG@10, averaged; impressions with one label class are left out of
AUC. A list's metrics (/recommend): hit@k and nDCG@k of the clicked items in the k shown, binary gains."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bundle.metrics import auc, dcg, mrr, ndcg


def impression_figures(labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """One impression's group AUC (only with clicked and unclicked items), MRR, nDCG@5 and nDCG@10; {} without a
    click."""
    y, s = np.asarray(labels, dtype=np.float64), np.asarray(scores, dtype=np.float64)
    if y.sum() == 0:
        return {}
    out = {"group_auc": auc(y, s)} if y.sum() < len(y) else {}
    return out | {"mrr": mrr(y, s), "ndcg@5": ndcg(y, s, 5), "ndcg@10": ndcg(y, s, 10)}


def list_figures(items: Sequence[str], clicked: set[str]) -> dict[str, float]:
    """hit@k (a clicked item among the k shown) and nDCG@k (binary gains; the ideal list has the clicked items
    first) of one list, k its length."""
    labels = np.array([item in clicked for item in items], dtype=np.float64)
    ideal = dcg(np.ones(min(len(clicked), len(items))), len(items))
    return {"hit@k": float(labels.any()), "ndcg@k": dcg(labels, len(items)) / ideal if ideal else 0.0}


class Means:
    """Running means of per-impression figures: constant memory however many impressions are replayed."""

    def __init__(self, keys: Sequence[str]):
        self.sums, self.counts = dict.fromkeys(keys, 0.0), dict.fromkeys(keys, 0)

    def add(self, figures: dict[str, float]) -> None:
        for key, value in figures.items():
            self.sums[key] += value
            self.counts[key] += 1

    def result(self) -> dict[str, float]:
        return {k: self.sums[k] / self.counts[k] if self.counts[k] else float("nan") for k in self.sums}


IMPRESSION_KEYS, LIST_KEYS = ("group_auc", "mrr", "ndcg@5", "ndcg@10"), ("hit@k", "ndcg@k")


def impression_metrics(labels: Sequence[np.ndarray], scores: Sequence[np.ndarray]) -> dict[str, float]:
    """MIND's group AUC, MRR, nDCG@5 and nDCG@10, averaged over impressions (those without clicks skipped)."""
    means = Means(IMPRESSION_KEYS)
    for y, s in zip(labels, scores):
        means.add(impression_figures(y, s))
    return means.result()


def list_metrics(shown: Sequence[Sequence[str]], clicked: Sequence[set[str]]) -> dict[str, float]:
    """`list_figures` averaged over lists."""
    means = Means(LIST_KEYS)
    for items, good in zip(shown, clicked):
        means.add(list_figures(items, good))
    return means.result()
