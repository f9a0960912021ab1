"""The fallback ranking a bundle carries for users its model cannot score (docs/bundle.md, "Fallback").

Computed from the training part of the data only, never from validation or test targets: the bundle's
metrics stay measured on data its fallback has not seen, as the model's are. Pure numpy, no torch.
"""
from __future__ import annotations

import numpy as np

from training.data.mind import Impressions

# The longest fallback kept. /recommend's k and /rank's candidates stop at 1,000 by default, so 10,000 leaves
# room for exclusions; below that an item's few interactions order it by noise, and the file stays <= 40 KB.
CAP = 10_000
HALF_LIFE_DAYS = 1.0  # news: a click a day older counts half (a news item's audience fades within days)


def popularity_order(weights: np.ndarray, cap: int = CAP) -> np.ndarray:
    """Indices >= 1 with a positive weight, heaviest first, ties by lower index (deterministic), at most `cap`.
    `weights` is indexed by catalog index; index 0 (padding) is never listed."""
    weights = np.asarray(weights, dtype=np.float64).copy()
    weights[0] = 0.0
    order = np.argsort(-weights, kind="stable")
    return order[weights[order] > 0][:cap].astype(np.int32)


def interaction_popularity(train_item: np.ndarray, n_items: int, cap: int = CAP) -> np.ndarray:
    """Interaction models: items by their number of training interactions (`n_items` counts the padding)."""
    return popularity_order(np.bincount(train_item, minlength=n_items), cap)


def recency_popularity(imps: Impressions, n_items: int, half_life_days: float = HALF_LIFE_DAYS,
                       cap: int = CAP) -> np.ndarray:
    """News: items by their training clicks (clicked candidates of the training impressions), each click
    weighted 0.5 ** (age / half-life), its age counted back from the last training impression. Today's
    news is what a new reader wants: a click yesterday counts half, a week ago 1/128."""
    if not len(imps):
        return np.zeros(0, dtype=np.int32)
    impression = np.repeat(np.arange(len(imps)), np.diff(imps.cand_indptr))
    clicked = imps.cand_labels.astype(bool)
    age_s = (imps.time.max() - imps.time).astype("timedelta64[s]").astype(np.float64)[impression[clicked]]
    weights = 0.5 ** (age_s / (86400.0 * half_life_days))
    return popularity_order(np.bincount(imps.cand_items[clicked], weights=weights, minlength=n_items), cap)
