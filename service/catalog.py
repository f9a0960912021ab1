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

    def upsert(self, ids: Sequence[str], vectors: np.ndarray) -> tuple[list[str], list[str]]:
        """Replace the vectors of known ids and append the others; returns (added, updated)."""
        added, updated = [], []
        with self._lock:
            new = [item for item in dict.fromkeys(ids) if item not in self.index]
            need = self.size + 1 + len(new)
            if need > self._rows.shape[0]:
                grown = np.zeros((max(need, 2 * self._rows.shape[0]), self.dim), dtype=np.float32)
                grown[: self.size + 1] = self._rows[: self.size + 1]
                self._rows = grown
            rows = {item: self.size + 1 + k for k, item in enumerate(new)}
            for item, vector in zip(ids, vectors):
                row = self.index.get(item) or rows[item]
                self._rows[row] = vector
                (updated if item in self.index else added).append(item)
            self.result_heads.extend(map(result_head, new))  # before `size` grows, as `ids`
            self.ids.extend(new)
            self.index.update(rows)
            self.size += len(new)
            self.generation += bool(updated)
        return list(dict.fromkeys(added)), list(dict.fromkeys(updated))
