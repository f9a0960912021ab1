"""Evaluation metrics.

Full sort (the interaction models): every catalog item is ranked for each user, the user's known items
(the phase's history) excluded, and the single held-out target's rank gives Recall/NDCG/MRR/Hit@K — the
definitions RecBole uses with one target per user. Ties are broken pessimistically (an item with the same
score as the target counts as ranked above it), so a constant model scores no better than chance.

Impressions (NRMS, MIND's definitions): per impression group AUC, MRR, nDCG@5, nDCG@10, then averaged.
Impressions with a single label class are skipped for AUC, as MIND does; those without clicks for the rest.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from bundle.metrics import auc, mrr, ndcg  # noqa: F401 (auc, mrr and ndcg are also imported from here)


def target_ranks(scores: Tensor, targets: Tensor, exclude_rows: Tensor, exclude_items: Tensor) -> Tensor:
    """0-based rank of each row's target among its row's scores after excluding (row, item) pairs.

    scores [U, I]; targets [U]; exclude_rows/exclude_items: parallel index vectors of excluded pairs. The
    indices may be on the CPU for scores on a GPU: they are moved to the scores' device, as gather needs.
    """
    targets, exclude_rows, exclude_items = (t.to(scores.device) for t in (targets, exclude_rows, exclude_items))
    scores = scores.clone()
    scores[exclude_rows, exclude_items] = float("-inf")
    target_scores = scores.gather(1, targets[:, None])
    return (scores >= target_scores).sum(1) - 1  # -1: the target itself


def rank_metrics(ranks: np.ndarray, ks: Sequence[int] = (10,)) -> dict[str, float]:
    """Recall/NDCG/MRR/Hit @K from 0-based target ranks (one relevant item per user)."""
    ranks = np.asarray(ranks)
    out: dict[str, float] = {}
    for k in ks:
        hit = ranks < k
        out[f"recall@{k}"] = float(hit.mean())
        out[f"ndcg@{k}"] = float(np.where(hit, 1.0 / np.log2(ranks + 2), 0.0).mean())
        out[f"mrr@{k}"] = float(np.where(hit, 1.0 / (ranks + 1), 0.0).mean())
        out[f"hit@{k}"] = float(hit.mean())
    return out


def csr_pairs(indptr: np.ndarray, indices: np.ndarray, rows: slice | np.ndarray) -> tuple[Tensor, Tensor]:
    """The (row, item) pairs of some CSR rows, a slice or an array of row numbers; the row numbers in the pairs are
    positions in `rows` (0 for its first row)."""
    if isinstance(rows, slice):
        start, stop = rows.start, rows.stop
        counts = np.diff(indptr[start : stop + 1])
        items = indices[indptr[start] : indptr[stop]]
    else:
        rows = np.asarray(rows, dtype=np.int64)
        counts = indptr[rows + 1] - indptr[rows]
        within = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        items = indices[np.repeat(indptr[rows], counts) + within]
    row_ids = np.repeat(np.arange(len(counts)), counts)
    return torch.from_numpy(row_ids), torch.from_numpy(np.asarray(items, dtype=np.int64))


# --- impression metrics (MIND) ---------------------------------------------------------------------------

def popularity_metrics(train_item: np.ndarray, n_items: int, part, ks: Sequence[int] = (10,)) -> dict[str, float]:
    """Full-sort metrics of ranking every item by its training count (`train_item`), for an `EvalSet` part:
    the floor a collaborative model has to clear."""
    counts = torch.from_numpy(np.bincount(train_item, minlength=n_items).astype(np.float32))
    counts[0] = float("-inf")  # padding, as the models' full sorts
    rows, items = csr_pairs(part.history_indptr, part.history_items, slice(0, len(part.user)))
    ranks = target_ranks(counts.expand(len(part.user), -1), torch.from_numpy(part.target.astype(np.int64)), rows, items)
    return rank_metrics(ranks.numpy(), ks)


def impression_metrics(labels: Sequence[np.ndarray], scores: Sequence[np.ndarray]) -> dict[str, float]:
    """MIND's group AUC, MRR, nDCG@5 and nDCG@10, averaged over impressions."""
    aucs, mrrs, n5, n10 = [], [], [], []
    for y, s in zip(labels, scores):
        y = np.asarray(y, dtype=np.float64)
        s = np.asarray(s, dtype=np.float64)
        if y.sum() == 0:
            continue
        if y.sum() < len(y):
            aucs.append(auc(y, s))
        mrrs.append(mrr(y, s))
        n5.append(ndcg(y, s, 5))
        n10.append(ndcg(y, s, 10))
    mean = lambda xs: float(np.mean(xs)) if xs else float("nan")  # noqa: E731
    return {"group_auc": mean(aucs), "mrr": mean(mrrs), "ndcg@5": mean(n5), "ndcg@10": mean(n10)}
