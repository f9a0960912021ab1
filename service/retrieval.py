"""The k best items of a catalog for one user vector: an exact scan, or through the bundle's nearest-neighbour
index above RECSERVE_RETRIEVAL_MIN_ITEMS bundle items (docs/deploy.md, "Large catalogs").

Exact: every row's score (one matrix product over the memory-mapped vectors; a pairwise scorer over every
row), the excluded rows masked, the top k.

Indexed, for dot-product scorers: the index's best `2k + 10` bundle rows or so (asked again for twice as many
while exclusions leave fewer than k), plus every row the index cannot know (items added while serving,
re-posted ones), all re-scored exactly from their current vectors; the top k of those.

Indexed, for a pairwise scorer (ConvNCF: a CNN per pair, impossible over a million items per request), two
stages as production recommenders do: the index retrieves the best RECSERVE_RERANK_CANDIDATES rows by the dot
product of the model's own user and item embeddings (the vectors its scorer takes), and the scorer re-ranks
those.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from bundle.ann import fetch_count
from service.model import ServedModel

Scores = Callable[[np.ndarray], np.ndarray]  # raw scores of catalog rows (a pairwise scorer's, cached per user)


def top_k(rows: np.ndarray, raw: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best (rows, raw scores) of `rows` scored `raw`, best first; -inf scores never make it."""
    finite = np.isfinite(raw)
    if not finite.all():
        rows, raw = rows[finite], raw[finite]
    k = min(k, raw.shape[0])
    top = np.argpartition(-raw, k - 1)[:k] if 0 < k < raw.shape[0] else np.arange(raw.shape[0])[:k]
    top = top[np.argsort(-raw[top], kind="stable")]
    return rows[top], raw[top]


def exact(model: ServedModel, vector: np.ndarray, k: int, drop: np.ndarray, scores: Scores | None) -> tuple:
    """Every row scored (rows 0..size), `drop` and the padding row masked."""
    # both give a new array, masked in place here
    raw = np.asarray(scores(None) if scores is not None else model.catalog.scores(vector), dtype=np.float32)
    raw[drop] = -np.inf
    raw[0] = -np.inf
    return top_k(np.arange(raw.shape[0]), raw, k)


def first_count(model: ServedModel, k: int, drop: np.ndarray, pairwise: bool, rerank: int) -> int:
    """How many rows `indexed` asks the index for first: its `found` when the caller searched already."""
    want = rerank if pairwise else k
    return min(fetch_count(want, len(set(drop.tolist()))), model.catalog.n_base)


def indexed(model: ServedModel, vector: np.ndarray, k: int, drop: np.ndarray, scores: Scores | None,
            rerank: int, found: np.ndarray | None = None) -> tuple:
    """Through the index (see the module's docstring); exact when the index cannot give k rows. `found`: the
    index's answer for `first_count` rows, when the caller searched (/recommend batches its searches,
    service/index_searches.py); asking again for more, which exclusions rarely need, searches here."""
    catalog = model.catalog
    # A set, not numpy's set operations: on a few hundred rows those cost more than the search (~0.3 ms).
    dropped = set(drop.tolist())
    want = rerank if scores is not None else k
    count = fetch_count(want, len(dropped))
    while True:
        if found is None:
            found = model.index.search(vector, min(count, catalog.n_base))
        kept = [row for row in found.tolist() if row not in dropped]
        if len(kept) >= want or count >= catalog.n_base:
            break
        count, found = count * 2, None
    if scores is not None:  # two stages: the scorer re-ranks the first stage's best
        rows = np.asarray(kept[:want], dtype=np.int64)
        return top_k(rows, np.asarray(scores(rows), dtype=np.float32), k)
    # The index's rows, and the rows it cannot know (added or re-posted items), each once.
    rows = np.fromiter(dict.fromkeys(kept + [r for r in catalog.extra_rows().tolist() if r not in dropped]),
                       np.int64)
    if rows.size < k and rows.size < catalog.size - len(dropped):  # exclusions ate the index's answer
        return exact(model, vector, k, drop, None)
    return top_k(rows, catalog.vectors(rows) @ vector, k)
