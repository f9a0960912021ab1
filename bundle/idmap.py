"""Id maps and histories as a few flat arrays, not a Python object per id (docs/bundle.md, "Id maps").

A million ids as a list and a dict cost a worker ~150 MB and a second of start-up; as arrays read with
`mmap_mode` they cost nothing until touched, and every worker on a machine shares the pages.

An id map is two `.npy` files: `<stem>.npy`, the ids UTF-8 encoded in one fixed-width bytes array in index
order, and `<stem>_order.npy`, the permutation that sorts it; a lookup is a binary search over the ids in
sorted order (a copy each process makes at load). Fixed width means every id takes the bytes of the longest:
keep ids short (the service limits them anyway). Ids must not contain NUL (numpy strips trailing NULs).

Histories are compressed rows (CSR): the users as an id map, `history_offsets.npy` (int64 [U + 1]) and
`history_items.npy` (int32 item indices, each user's oldest first): user u's history is
items[offsets[u]:offsets[u + 1]].
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

ORDER_SUFFIX = "_order"


def _encoded(ids: Sequence[str]) -> np.ndarray:
    raw = [i.encode() for i in ids]
    width = max(map(len, raw), default=1) or 1
    return np.array(raw, dtype=f"S{width}")


def write_idmap(folder: Path, stem: str, ids: Sequence[str]) -> None:
    """`<stem>.npy` and `<stem>_order.npy` in `folder`; ValueError for a NUL in an id or a repeated id."""
    bad = next((i for i in ids if "\x00" in i), None)
    if bad is not None:
        raise ValueError(f"id {bad!r} contains a NUL character")
    array = _encoded(ids)
    order = np.argsort(array, kind="stable").astype(np.int32 if len(ids) < 2**31 else np.int64)
    if len(ids) > 1 and (array[order][1:] == array[order][:-1]).any():
        twice = array[order][1:][array[order][1:] == array[order][:-1]][0].decode()
        raise ValueError(f"id {twice!r} appears twice")
    np.save(folder / f"{stem}.npy", array)
    np.save(folder / f"{stem}{ORDER_SUFFIX}.npy", order)


def idmap_files(stem: str) -> tuple[str, str]:
    return f"{stem}.npy", f"{stem}{ORDER_SUFFIX}.npy"


class IdMap:
    """Ids <-> 0-based positions over the two arrays (memory-mapped or not)."""

    def __init__(self, ids: np.ndarray, order: np.ndarray):
        if ids.ndim != 1 or ids.dtype.kind != "S":
            raise ValueError(f"ids must be a 1-D bytes array, got {ids.dtype} of shape {ids.shape}")
        if order.shape != ids.shape or order.dtype.kind not in "iu":
            raise ValueError(f"the sort order must be {ids.shape[0]} integers, got {order.dtype} {order.shape}")
        if len(order) and (order.min() < 0 or order.max() >= len(order)):
            raise ValueError("the sort order holds positions out of range")
        self.ids, self.order, self.width = ids, order, ids.dtype.itemsize
        # The ids in sorted order, a private copy (8 MB for a million 8-byte ids): numpy's searchsorted checks
        # every index of a `sorter` on each call, so a lookup through `order` cost O(N), ~0.3-0.6 ms for 20
        # ids at a million, against ~6 us on the sorted copy (docs/benchmarks.md 6.6).
        self._sorted = np.ascontiguousarray(ids[order]) if len(ids) else ids

    @classmethod
    def of(cls, ids: Sequence[str]) -> IdMap:
        """An id map held in memory (tests, small tools): what `write_idmap` would write, not written."""
        array = _encoded(ids)
        return cls(array, np.argsort(array, kind="stable"))

    def __len__(self) -> int:
        return self.ids.shape[0]

    def id(self, position: int) -> str:
        return self.ids[position].decode()

    def all(self) -> list[str]:
        """Every id in index order (a Python list: for small maps and for training, not the request path)."""
        return [i.decode() for i in self.ids]

    def find(self, ids: Sequence[str]) -> np.ndarray:
        """The position of each id, -1 where unknown (int64)."""
        if not len(self) or not ids:
            return np.full(len(ids), -1, dtype=np.int64)
        raw = [i.encode() for i in ids]
        query = np.array([r if len(r) <= self.width else b"" for r in raw], dtype=self.ids.dtype)
        at = np.minimum(np.searchsorted(self._sorted, query), len(self) - 1)
        hit = (self._sorted[at] == query) & np.array([0 < len(r) <= self.width for r in raw])
        return np.where(hit, self.order[at].astype(np.int64), -1)

    def get(self, one: str) -> int | None:
        """The position of one id, or None."""
        position = int(self.find([one])[0])
        return None if position < 0 else position

    def problem(self) -> str | None:
        """What makes the arrays no id map (not a permutation that sorts distinct ids), or None. O(N): a
        loader may skip it for arrays whose hash it checked against an exporter's manifest."""
        n = len(self)   # (positions out of range are refused when the map is made)
        ordered = self._sorted
        if n > 1 and not (ordered[1:] > ordered[:-1]).all():
            return "the sort order does not sort the ids into distinct, increasing ones"
        return None


class Histories:
    """User id -> item indices (oldest first) over the CSR arrays."""

    def __init__(self, users: IdMap, offsets: np.ndarray, items: np.ndarray):
        if offsets.shape != (len(users) + 1,):
            raise ValueError(f"history offsets must be {len(users) + 1} integers, got shape {offsets.shape}")
        if len(users) and (offsets[0] != 0 or offsets[-1] != items.shape[0] or (np.diff(offsets) < 0).any()):
            raise ValueError("history offsets must rise from 0 to the number of history items")
        self.users, self.offsets, self.items = users, offsets, items

    def __len__(self) -> int:
        return len(self.users)

    def get(self, user_id: str) -> np.ndarray | None:
        """The user's item indices (int64, oldest first), or None for a user without a stored history."""
        position = self.users.get(user_id)
        if position is None:
            return None
        return self.items[self.offsets[position]:self.offsets[position + 1]].astype(np.int64)

    def as_ids(self, item_id: Callable[[int], str]) -> dict[str, list[str]]:
        """{user: [item ids]} (for re-export and tests; not the request path)."""
        return {u: [item_id(int(i)) for i in self.get(u)] for u in self.users.all()}


def write_histories(folder: Path, histories: Mapping[str, Sequence[str]], item_index: Mapping[str, int]) -> None:
    """The CSR history files of {user: [item ids, oldest first]}; `item_index` maps ids to indices 1..N.
    KeyError names an item the catalog does not have."""
    users = list(histories)
    lengths = np.array([len(histories[u]) for u in users], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    items = np.empty(int(offsets[-1]), dtype=np.int32)
    for u, start in zip(users, offsets[:-1]):
        for k, item in enumerate(histories[u]):
            if item not in item_index:
                raise KeyError(f"the history of user {u!r} holds item {item!r}, which is not in the catalog")
            items[start + k] = item_index[item]
    write_idmap(folder, "history_users", users)
    np.save(folder / "history_offsets.npy", offsets)
    np.save(folder / "history_items.npy", items)
