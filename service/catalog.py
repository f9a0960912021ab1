"""The in-memory catalog: item ids <-> rows of a vector matrix [n_items + 1, D], row 0 being padding."""
from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from service.responses import result_head


class Catalog:
    """Readers take `matrix` (a view) once per request; writers append under a lock and publish the new size
    last, so a reader never sees a row it was not given an index for."""

    def __init__(self, ids: Sequence[str], vectors: np.ndarray):
        n, dim = vectors.shape
        self.dim = dim
        self._rows = np.zeros((n + 1, dim), dtype=np.float32)
        self._rows[1:] = vectors
        self.ids: list[str] = ["", *ids]
        self.result_heads: list[bytes] = list(map(result_head, self.ids))  # see responses.ranking_json
        self.index: dict[str, int] = {item: i for i, item in enumerate(ids, start=1)}
        self.size = n
        self.generation = 0  # bumped whenever a known item's vector is replaced
        self._lock = threading.Lock()

    @property
    def matrix(self) -> np.ndarray:
        """[size + 1, D] float32; row 0 is zeros."""
        return self._rows[: self.size + 1]

    def lookup(self, ids: Sequence[str]) -> tuple[list[int], list[str]]:
        """(indices of the known ids in order, the unknown ids)."""
        found = list(map(self.index.get, ids))
        if None not in found:  # the common case, without a per-id branch
            return found, []
        known = [i for i in found if i is not None]
        return known, [item for item, i in zip(ids, found) if i is None]

    def reserve(self, extra: int) -> None:
        """Make room for `extra` more rows, so that an upsert of that many new ids copies no matrix. Growing
        copies every row (a 65,000 x 400 catalog: 100 MB): /items calls this in a worker thread."""
        with self._lock:
            self._grow(extra)

    def _grow(self, extra: int) -> None:
        """Under the lock: at least `extra` free rows, doubling the capacity when it grows."""
        need = self.size + 1 + extra
        if need > self._rows.shape[0]:
            grown = np.zeros((max(need, 2 * self._rows.shape[0]), self.dim), dtype=np.float32)
            grown[: self.size + 1] = self._rows[: self.size + 1]
            self._rows = grown  # readers hold the old array or the new one; both have rows 0..size

    def upsert(self, ids: Sequence[str], vectors: np.ndarray) -> tuple[list[str], list[str]]:
        """Replace the vectors of known ids and append the others; returns (added, updated), each id once. An id
        given twice gets its last vector."""
        last = {item: k for k, item in enumerate(ids)}  # in order of first appearance, each its last position
        with self._lock:
            updated = [item for item in last if item in self.index]
            added = [item for item in last if item not in self.index]
            self._grow(len(added))
            rows = {item: self.size + 1 + k for k, item in enumerate(added)}
            # one fancy-index copy for all rows, not one assignment per row
            self._rows[[self.index.get(item) or rows[item] for item in last]] = vectors[list(last.values())]
            self.result_heads.extend(map(result_head, added))  # before `size` grows, as `ids`
            self.ids.extend(added)
            self.index.update(rows)
            self.size += len(added)
            self.generation += bool(updated)
        return added, updated
