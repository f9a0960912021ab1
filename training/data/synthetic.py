"""A synthetic RecBole atomic dataset with structure a model can learn and a popularity ranking cannot.

The hidden process, per user, one interaction at a time (no item twice per user):

- Items have a primary class and, a third of the time, a second one (``class:token_seq`` in the ``.item``
  file), and a Zipf-skewed popularity.
- Each user has latent tastes over classes (a sparse Dirichlet draw): most users like one to three classes.
- Each class's items form a hidden cycle, the item *chain*. With probability ``P_SUCCESSOR`` the next item is
  the chain successor of the previous one (skipping items the user already has); otherwise it is drawn by
  popularity x taste (``P_TASTE``) or by popularity alone.
- Ratings (1-5) grow with how well the item's classes match the user's tastes; timestamps increase per user.

So the next item usually shares a class with the previous one, the successor relation is learnable from
sequences, and the class features help to generalise it. Deterministic for a seed; well under a second.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

P_SUCCESSOR = 0.5       # next item = chain successor of the previous one
P_TASTE = 0.35          # next item ~ popularity x user taste; the rest: popularity alone
ZIPF_EXPONENT = 0.9     # popularity of the r-th most popular item ~ 1 / r**ZIPF_EXPONENT
TASTE_CONCENTRATION = 0.3
P_SECOND_CLASS = 0.35
START_TIME = 1_600_000_000


def _draw(weights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One column index per row of a non-negative [R, N] weight matrix (rows must have positive sums)."""
    cum = np.cumsum(weights, axis=1)
    u = rng.random(len(weights)) * cum[:, -1]
    return np.minimum((cum <= u[:, None]).sum(axis=1), weights.shape[1] - 1)


def write_synthetic_atomic(dest: str | os.PathLike, *, name: str = "synthetic", n_users: int = 300,
                           n_items: int = 200, n_classes: int = 8, interactions_per_user: tuple[int, int] = (15, 40),
                           p_successor: float = P_SUCCESSOR, p_taste: float = P_TASTE,
                           zipf_exponent: float = ZIPF_EXPONENT, seed: int = 0) -> Path:
    """Write ``dest/<name>.inter`` and ``dest/<name>.item``; returns ``dest`` (the dataset folder).

    ``.inter``: user_id:token (``u1``...), item_id:token (``i1``...), rating:float, timestamp:float (integral
    seconds); rows in global time order. ``.item``: item_id:token, class:token_seq (``c0``..., one or two).
    Each user gets between interactions_per_user[0] and [1] interactions (inclusive), all distinct items.
    Items nobody drew are listed in ``.item`` only. ``p_successor``, ``p_taste`` and ``zipf_exponent`` set the
    mix (module constants by default): ``p_successor=0`` leaves order meaningless and tastes as the structure to
    learn, which is what a model that ignores order (ConvNCF) can show it learns.
    """
    lo, hi = interactions_per_user
    if not 1 <= lo <= hi <= n_items:
        raise ValueError(f"interactions_per_user must satisfy 1 <= low <= high <= n_items, got {interactions_per_user}")
    if n_users < 1 or n_classes < 1:
        raise ValueError("n_users and n_classes must be positive")
    if min(p_successor, p_taste) < 0 or p_successor + p_taste > 1:
        raise ValueError(f"p_successor and p_taste must be non-negative with a sum <= 1, got {p_successor}, {p_taste}")
    rng = np.random.default_rng(seed)

    # Items: classes, popularity, the per-class chain.
    primary = rng.permutation(np.arange(n_items) % n_classes)
    item_classes = np.zeros((n_items, n_classes), dtype=bool)
    item_classes[np.arange(n_items), primary] = True
    second = (primary + rng.integers(1, max(n_classes, 2), n_items)) % n_classes
    has_second = (rng.random(n_items) < P_SECOND_CLASS) & (n_classes > 1)
    item_classes[np.flatnonzero(has_second), second[has_second]] = True
    popularity = 1.0 / (rng.permutation(n_items) + 1.0) ** zipf_exponent
    successor = np.empty(n_items, dtype=np.int64)
    by_class = np.lexsort((rng.random(n_items), primary))       # each class's items in a random cycle order
    class_start = np.searchsorted(primary[by_class], primary[by_class], side="left")
    class_end = np.searchsorted(primary[by_class], primary[by_class], side="right")
    nxt = np.arange(n_items) + 1
    successor[by_class] = by_class[np.where(nxt == class_end, class_start, nxt)]

    # Users: tastes, sequence lengths; then generate all users in lockstep, one position per step.
    tastes = rng.dirichlet(np.full(n_classes, TASTE_CONCENTRATION), size=n_users)
    affinity = tastes @ item_classes.T.astype(np.float64)          # [U, I] in [0, 1]
    taste_weights = popularity * (affinity + 0.02)
    lengths = rng.integers(lo, hi + 1, n_users)
    consumed = np.zeros((n_users, n_items), dtype=bool)
    seqs = np.zeros((n_users, hi), dtype=np.int64)
    rows = np.arange(n_users)
    for t in range(hi):
        free = ~consumed
        by_taste = _draw(taste_weights * free, rng)
        by_pop = _draw(popularity * free, rng)
        mode = rng.random(n_users)
        pick = np.where(mode < p_successor + p_taste, by_taste, by_pop)
        if t:
            follow = successor[seqs[:, t - 1]]
            for _ in range(3):                                     # skip successors already taken
                follow = np.where(consumed[rows, follow], successor[follow], follow)
            use = (mode < p_successor) & ~consumed[rows, follow]
            pick = np.where(use, follow, pick)
        active = lengths > t
        seqs[active, t] = pick[active]
        consumed[rows[active], pick[active]] = True

    # Interactions: ratings from taste match, increasing timestamps, rows in global time order.
    user = np.repeat(rows, lengths)
    item = seqs[np.arange(hi) < lengths[:, None]]
    rating = np.clip(np.rint(1.5 + 3.5 * affinity[user, item] + rng.normal(0, 0.7, len(user))), 1, 5)
    gaps = rng.integers(60, 86_400, len(user))
    starts = np.repeat(START_TIME + rng.integers(0, 30 * 86_400, n_users), lengths)
    total, first = np.cumsum(gaps), np.cumsum(lengths) - lengths    # per-user running sum of the gaps
    timestamp = starts + total - np.repeat(total[first] - gaps[first], lengths)
    order = np.argsort(timestamp, kind="stable")

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    inter = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    inter += [f"u{u + 1}\ti{i + 1}\t{int(r)}\t{ts}" for u, i, r, ts in
              zip(user[order].tolist(), item[order].tolist(), rating[order].tolist(), timestamp[order].tolist())]
    (dest / f"{name}.inter").write_text("\n".join(inter) + "\n", encoding="utf-8")
    items = ["item_id:token\tclass:token_seq"]
    items += [f"i{i + 1}\t" + " ".join(f"c{c}" for c in np.flatnonzero(item_classes[i])) for i in range(n_items)]
    (dest / f"{name}.item").write_text("\n".join(items) + "\n", encoding="utf-8")
    return dest
