"""The catalog: item ids <-> rows, and each row's vector. Row 0 is padding; rows 1..N are the bundle's, read
from its memory-mapped `item_vectors.npy` (shared by every worker on the machine, never copied); rows N+1..size
are items added while serving (/items), in a small matrix beside it. An item of the bundle that is posted again
keeps its row; its new vector is kept beside the mapped matrix too (`replaced`)."""
from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np
import orjson

from bundle.idmap import IdMap
from service.responses import result_head

HEADS_KEPT = 200_000  # result heads kept per catalog (see `Heads`)
ROWS_KEPT = 200_000  # bundle ids whose rows a catalog keeps in a dict (see `Catalog.lookup`)


class Heads:
    """Row -> its result head (`responses.result_head`), made on first use and kept: a million-item catalog
    need not hold a million of them, yet the rows responses actually show (a far smaller set) are ready."""

    def __init__(self, catalog: Catalog):
        self.catalog, self._made = catalog, {}

    def __getitem__(self, row: int) -> bytes:
        head = self._made.get(row)
        if head is None:
            if len(self._made) >= HEADS_KEPT:
                self._made = {}
            head = self._made[row] = result_head(self.catalog.id_of(row))
        return head


class Catalog:
    """Readers take what they need once per request; writers append under a lock and publish the new size
    last, so a reader never sees a row it was not given an index for."""

    def __init__(self, ids: IdMap, vectors: np.ndarray):
        """`vectors`: [len(ids) + 1, D] float32, row 0 zeros (the bundle's item_vectors.npy, mapped)."""
        self.base, self.ids_map = vectors, ids
        self.n_base = len(ids)
        self.dim = vectors.shape[1]
        self._added = np.zeros((16, self.dim), dtype=np.float32)  # rows n_base+1.. ; grows by doubling
        self.added_ids: list[str] = []
        self.added_index: dict[str, int] = {}
        # (sorted bundle rows whose item was posted again, their new vectors): one tuple, replaced whole on
        # each change, so a reader takes both from the same write
        self.replaced: tuple[np.ndarray, np.ndarray] = (np.zeros(0, np.int64), np.zeros((0, self.dim), np.float32))
        self.size = self.n_base
        self.generation = 0  # bumped whenever a known item's vector is replaced
        self.heads = Heads(self)
        self._rows_of: dict[str, int] = {}  # bundle ids looked up lately -> row (a bundle row never changes)
        self._ids_of: dict[int, str] = {}  # and the other way round (see `ids_of`)
        self._ids_json: dict[int, bytes] = {}  # row -> its id as JSON (see `ids_json`)
        self._lock = threading.Lock()

    @classmethod
    def of(cls, ids: Sequence[str], vectors: np.ndarray) -> Catalog:
        """A catalog of `ids` with `vectors` [len(ids), D] (row 0 padding added), held in memory."""
        padded = np.zeros((len(ids) + 1, vectors.shape[1]), dtype=np.float32)
        padded[1:] = vectors
        return cls(IdMap.of(ids), padded)

    def id_of(self, row: int) -> str:
        return self.ids_map.id(row - 1) if row <= self.n_base else self.added_ids[row - self.n_base - 1]

    def ids_of(self, rows: Sequence[int]) -> list[str]:
        """The ids of catalog rows. The ids of rows asked for lately are kept in a dict (at most HEADS_KEPT; a
        row's id never changes): the feedback log looks up every answer's ids, and the id map's numpy element
        costs ~0.2 us an id where a dict costs a fifth of that."""
        kept = self._ids_of
        rows = rows.tolist() if isinstance(rows, np.ndarray) else rows
        try:
            return [kept[r] for r in rows]
        except KeyError:
            pass
        if len(kept) >= HEADS_KEPT:
            kept = self._ids_of = {}
        out = []
        for row in rows:
            item = kept.get(row)
            if item is None:
                item = kept[row] = self.id_of(int(row))
            out.append(item)
        return out

    def ids_json_parts(self, rows: Sequence[int]) -> list[bytes]:
        """Each row's id as JSON, encoded once and kept (at most HEADS_KEPT): the feedback log writes the ids of
        every answer's rows (service/feedback/columns.py), and joining kept pieces costs a fraction of encoding
        the strings again."""
        kept = self._ids_json
        rows = rows.tolist() if isinstance(rows, np.ndarray) else rows
        try:
            return list(map(kept.__getitem__, rows))
        except KeyError:
            pass
        if len(kept) >= HEADS_KEPT:
            kept = self._ids_json = {}
        for row in rows:
            if row not in kept:
                kept[row] = orjson.dumps(self.id_of(int(row)))
        return list(map(kept.__getitem__, rows))

    def ids_json(self, rows: Sequence[int]) -> bytes:
        """The ids of catalog rows as a JSON array (see `ids_json_parts`)."""
        return b"[" + b",".join(self.ids_json_parts(rows)) + b"]"

    def lookup(self, ids: Sequence[str]) -> tuple[list[int], list[str]]:
        """(rows of the known ids in order, the unknown ids). Bundle ids looked up lately are answered from a
        dict (a binary search over the id map costs ~10x a dict probe; requests repeat the same candidates);
        the others, in one search. Unknown ids are never kept: a client cannot fill the dict with junk."""
        found = list(map(self._rows_of.get, ids))
        if None not in found:  # the common case, without a per-id branch
            return found, []
        if self.added_index:
            found = [self.added_index.get(item) if row is None else row for item, row in zip(ids, found)]
        missing = [item for item, row in zip(ids, found) if row is None]
        if missing:
            rows = dict(zip(missing, (self.ids_map.find(missing) + 1).tolist()))  # 0 where unknown
            known = {item: row for item, row in rows.items() if row}
            if len(self._rows_of) + len(known) > ROWS_KEPT:
                self._rows_of = {}
            self._rows_of.update(known)
            found = [rows[item] if row is None else row for item, row in zip(ids, found)]
        if 0 not in found:
            return found, []
        return [r for r in found if r], [item for item, r in zip(ids, found) if not r]

    def __contains__(self, item_id: str) -> bool:
        return item_id in self.added_index or self.ids_map.get(item_id) is not None

    def vectors(self, rows: np.ndarray) -> np.ndarray:
        """The current vectors [len(rows), D] of catalog rows (a new array; row 0 gives zeros)."""
        rows = np.asarray(rows, dtype=np.int64)
        if not rows.size or rows.max() <= self.n_base:
            out = self.base[rows]
        else:
            out = np.empty((rows.shape[0], self.dim), dtype=np.float32)
            base = rows <= self.n_base
            out[base] = self.base[rows[base]]
            out[~base] = self._added[rows[~base] - self.n_base - 1]
        replaced, new = self.replaced
        if replaced.size:
            at = np.searchsorted(replaced, rows)
            hit = replaced[np.minimum(at, replaced.size - 1)] == rows
            out[hit] = new[at[hit]]
        return out

    def extra_rows(self) -> np.ndarray:
        """The rows whose vectors are not the bundle's (added items, and re-posted ones): what an index built
        at export cannot know, so retrieval scores them exactly."""
        return np.concatenate([self.replaced[0], np.arange(self.n_base + 1, self.size + 1, dtype=np.int64)])

    def scores(self, user: np.ndarray) -> np.ndarray:
        """Dot products [size + 1] of every row's current vector with `user` (row 0 scores 0): one product over
        the mapped matrix, one over the added rows, one over the replaced vectors."""
        n_added = self.size - self.n_base
        out = np.empty(self.size + 1, dtype=np.float32)
        np.dot(self.base, user, out=out[: self.n_base + 1])
        if n_added:
            out[self.n_base + 1:] = self._added[:n_added] @ user
        replaced, new = self.replaced
        if replaced.size:
            out[replaced] = new @ user
        return out

    @property
    def matrix(self) -> np.ndarray:
        """Every row's current vector, [size + 1, D]: the mapped matrix itself while nothing was added (no
        copy), else a copy (offline scoring and small catalogs only)."""
        if self.size == self.n_base and not self.replaced[0].size:
            return self.base
        return self.vectors(np.arange(self.size + 1))

    def reserve(self, extra: int) -> None:
        """Make room for `extra` more added rows, so that an upsert of that many new ids copies nothing.
        Growing copies the added rows (not the bundle's): /items calls this in a worker thread."""
        with self._lock:
            self._grow(extra)

    def _grow(self, extra: int) -> None:
        """Under the lock: at least `extra` free added rows, doubling the capacity when it grows."""
        need = self.size - self.n_base + extra
        if need > self._added.shape[0]:
            grown = np.zeros((max(need, 2 * self._added.shape[0]), self.dim), dtype=np.float32)
            grown[: self.size - self.n_base] = self._added[: self.size - self.n_base]
            self._added = grown  # readers hold the old array or the new one; both have the rows they know

    def upsert(self, ids: Sequence[str], vectors: np.ndarray) -> tuple[list[str], list[str]]:
        """Give each id its vector: new ids get new rows, known ones keep theirs with the vector replaced;
        returns (added, updated), each id once. An id given twice gets its last vector."""
        last = {item: k for k, item in enumerate(ids)}  # in order of first appearance, each its last position
        with self._lock:
            rows = dict(zip(last, (self.ids_map.find(list(last)) + 1).tolist()))  # 0: not in the bundle
            rows.update({item: self.added_index[item] for item in last if item in self.added_index})
            updated = [item for item in last if rows[item]]
            added = [item for item in last if not rows[item]]
            self._grow(len(added))
            rows.update({item: self.size + 1 + k for k, item in enumerate(added)})
            mine = [item for item in last if rows[item] > self.n_base]  # added rows: replaced where they are
            self._added[[rows[item] - self.n_base - 1 for item in mine]] = vectors[[last[item] for item in mine]]
            again = {rows[item]: vectors[last[item]] for item in updated if rows[item] <= self.n_base}
            if again:  # a new pair of arrays, so a reader holds either the old one or the new one
                kept = dict(zip(self.replaced[0].tolist(), self.replaced[1])) | again
                order = sorted(kept)
                self.replaced = (np.asarray(order, dtype=np.int64),
                                 np.stack([kept[r] for r in order]).astype(np.float32))
            self.added_ids.extend(added)  # before `size` grows, so a reader never sees a row without its id
            self.added_index.update({item: rows[item] for item in added})
            self.size += len(added)
            self.generation += bool(updated)
        return added, updated
