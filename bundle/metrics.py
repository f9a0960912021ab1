"""MIND's ranking metrics of one impression, in numpy: what training (training/evaluate.py) and the service's
offline evaluation (service/feedback/metrics.py) both compute, so their figures compare. Torch-free, like the
rest of bundle/."""
from __future__ import annotations

import numpy as np


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC by the rank-sum (Mann-Whitney) formula, ties counted half."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(pos) * len(neg)))


def mrr(labels: np.ndarray, scores: np.ndarray) -> float:
    ordered = labels[np.argsort(-scores, kind="stable")]
    return float((ordered / np.arange(1, len(ordered) + 1)).sum() / ordered.sum())


def dcg(labels_in_order: np.ndarray, k: int) -> float:
    gains = 2.0 ** labels_in_order[:k] - 1
    return float((gains / np.log2(np.arange(len(gains)) + 2)).sum())


def ndcg(labels: np.ndarray, scores: np.ndarray, k: int) -> float:
    best = dcg(np.sort(labels)[::-1], k)
    return dcg(labels[np.argsort(-scores, kind="stable")], k) / best
