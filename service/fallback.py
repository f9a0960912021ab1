"""The fallback ranking: what a user the model cannot score gets (docs/bundle.md, "Fallback ranking").

The order is the bundle's (popularity computed at training time) with the newest items added through /items
interleaved. The catalog appends items added while serving after the bundle's N rows, in the order they were
first added, so rows N+1..size are those items, newest last; an item the bundle knows keeps its own place.
The newest `fresh` of them take every second place from the 2nd (popular, fresh, popular, fresh, ...): a new
article reaches new readers at once, yet the proven popular ones keep the top place and half the list.

Scores are 1 / place (1, 0.5, 0.333...): a property of the item in this order, not a model's relevance, so the
same item gets the same score in every fallback answer. A /rank candidate the order does not list scores 0.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bundle.reader import Bundle


@dataclass(frozen=True)
class Fallback:
    kind: str           # the bundle's fallback kind, which responses carry as their "fallback" flag
    rows: np.ndarray    # int64 bundle rows (catalog indices 1..N), best first
    place: np.ndarray   # int64 [N + 1]: 1-based place of each bundle row in `rows`, 0 = not listed

    @classmethod
    def of(cls, bundle: Bundle) -> Fallback | None:
        """The bundle's fallback, or None for a bundle made before bundles carried one."""
        if bundle.fallback is None or bundle.fallback_kind is None:
            return None
        place = np.zeros(len(bundle.items) + 1, dtype=np.int64)
        place[bundle.fallback] = np.arange(1, len(bundle.fallback) + 1)
        return cls(bundle.fallback_kind, bundle.fallback, place)

    def _shown(self, size: int, fresh: int) -> int:
        """How many fresh items take part: the newest `fresh`, of the size - N added while serving."""
        return max(0, min(fresh, size - (len(self.place) - 1)))

    def order(self, size: int, fresh: int) -> np.ndarray:
        """Catalog rows best first, for a catalog of `size` rows (1..size), `fresh` newest added interleaved.
        Popular item p (1-based) lands at place p + min(p - 1, f), fresh item j (1 = newest) at j + min(j, L)."""
        n_popular, f = len(self.rows), self._shown(size, fresh)
        out = np.empty(n_popular + f, dtype=np.int64)
        p, j = np.arange(1, n_popular + 1), np.arange(1, f + 1)
        out[p + np.minimum(p - 1, f) - 1] = self.rows
        out[j + np.minimum(j, n_popular) - 1] = size + 1 - j
        return out

    def places(self, rows: np.ndarray, size: int, fresh: int) -> np.ndarray:
        """The 1-based place of each catalog row in `order(size, fresh)`, 0 for a row it does not list."""
        n, n_popular, f = len(self.place) - 1, len(self.rows), self._shown(size, fresh)
        out = np.zeros(len(rows), dtype=np.int64)
        known = rows <= n
        p = self.place[rows[known]]
        out[known] = np.where(p > 0, p + np.minimum(p - 1, f), 0)
        j = size + 1 - rows[~known]
        out[~known] = np.where(j <= f, j + np.minimum(j, n_popular), 0)
        return out

    def rank(self, rows: np.ndarray, size: int, fresh: int) -> tuple[np.ndarray, np.ndarray]:
        """Distinct catalog `rows` in fallback order, those it does not list after them in the given order;
        returns (rows, float64 scores)."""
        place = self.places(rows, size, fresh)
        listed = np.flatnonzero(place > 0)
        order = np.concatenate([listed[np.argsort(place[listed], kind="stable")], np.flatnonzero(place == 0)])
        return rows[order], _scores(place[order])

    def top(self, k: int, excluded: np.ndarray, size: int, fresh: int) -> tuple[np.ndarray, np.ndarray]:
        """The first `k` rows of the fallback order that are not `excluded`; returns (rows, float64 scores)."""
        order = self.order(size, fresh)
        keep = np.flatnonzero(~np.isin(order, excluded))[:k]
        return order[keep], _scores(keep + 1)


def _scores(place: np.ndarray) -> np.ndarray:
    """1 / place; 0 where the place is 0 (not listed)."""
    return np.divide(1.0, place, out=np.zeros(len(place)), where=place > 0)
