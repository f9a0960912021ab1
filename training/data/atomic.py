"""RecBole atomic files: ``<name>.inter`` (interactions) and the optional ``<name>.item`` (item features).

Format (RecBole's): UTF-8 text, tab-separated, one header line of ``name:type`` columns, type one of
``token``, ``token_seq`` (space-separated tokens), ``float``, ``float_seq``. Example::

    user_id:token   item_id:token   rating:float    timestamp:float
    196             242             3               881250949

Conventions the rest of the code relies on:

- Index 0 is padding in every vocabulary (``Vocab.ids[0] == "[PAD]"``); real ids start at 1.
- User and item indices are assigned in order of first appearance in the ``.inter`` file *after* filtering
  (like RecBole's remap, which factorizes the filtered interactions). Feature tokens are numbered in order of
  first appearance in the ``.item`` file, left to right, among the items that are kept.
- Interactions come back sorted by (user index, timestamp) with a stable sort, so ties keep file order.
  Since users are numbered by first appearance, user indices are ascending; each user's interactions are
  one contiguous run, oldest first. Without a timestamp column the file order is the time order
  (``timestamp`` holds the 0-based row number).
- Items listed only in ``.item`` are dropped; items of ``.inter`` missing from ``.item`` get all-padding token
  features and, for float fields, the mean of the known values (RecBole's fill rule). Row 0 is all zeros.
- Any problem with the files raises ``DataError`` naming the file, the 1-based line (header = line 1) and
  the problem.
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from training.data.errors import DataError

PAD = "[PAD]"
FIELD_TYPES = ("token", "token_seq", "float", "float_seq")
USER, ITEM, RATING, TIME = "user_id", "item_id", "rating", "timestamp"
FEATURE_TYPES = ("token", "token_seq", "float")  # the .item field types read as features


@dataclass
class Vocab:
    """External id <-> index. ``ids[0]`` is the padding entry; real ids have indices >= 1."""

    ids: list[str]
    index: dict[str, int]

    @classmethod
    def from_ids(cls, ids: Sequence[str]) -> Vocab:
        """A vocabulary of ``ids`` (without padding) numbered 1, 2, ... in the given order."""
        full = [PAD, *ids]
        return cls(ids=full, index={s: i for i, s in enumerate(full) if i})

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class InteractionData:
    name: str
    users: Vocab
    items: Vocab
    user: np.ndarray                     # int64 [n] user index per interaction
    item: np.ndarray                     # int64 [n] item index per interaction
    timestamp: np.ndarray                # float64 [n]
    rating: np.ndarray | None            # float32 [n], None without a rating column
    item_features: dict[str, np.ndarray] = field(default_factory=dict)  # int64 [len(items), max_tokens], 0 = pad
    feature_vocabs: dict[str, Vocab] = field(default_factory=dict)
    item_floats: dict[str, np.ndarray] = field(default_factory=dict)    # float32 [len(items)]
    fingerprint: str = ""                # sha256 of the files read


# --- reading one table ------------------------------------------------------------------------------------

@dataclass
class _Table:
    path: Path
    columns: dict[str, str]              # name -> type, header order
    cols: dict[str, tuple[str, ...]]     # name -> the column's raw strings
    lines: np.ndarray                    # int64 [rows] the 1-based file line of each row
    raw: bytes

    def __len__(self) -> int:
        return len(self.lines)

    def header_text(self) -> str:
        return ", ".join(f"{n}:{t}" for n, t in self.columns.items()) or "none"

    def require(self, name: str, types: Sequence[str]) -> None:
        if name not in self.columns:
            commas = "; atomic files are tab-separated, and this header holds commas" if "," in self.header_text() else ""
            raise DataError(self.path, 1, f"header has no {name} column (columns: {self.header_text()}){commas}")
        if self.columns[name] not in types:
            raise DataError(self.path, 1, f"column {name} must be of type {' or '.join(types)}, "
                                          f"the header says {self.columns[name]}")


def _read_table(path: Path) -> _Table:
    if not path.is_file():
        raise DataError(path, None, "file not found")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(path, raw[: e.start].count(b"\n") + 1, f"not valid UTF-8 ({e.reason})") from None
    if not text.strip():
        raise DataError(path, None, "empty file: expected a header line of name:type columns")
    lines = text.split("\n")
    if "\r" in text:
        lines = [line.rstrip("\r") for line in lines]

    columns: dict[str, str] = {}
    for col in lines[0].split("\t"):
        name, colon, typ = col.rpartition(":")
        if not colon or not name:
            raise DataError(path, 1, f"header column {col!r} is not name:type (types: {', '.join(FIELD_TYPES)})")
        if typ not in FIELD_TYPES:
            raise DataError(path, 1, f"header column {col!r} has unknown type {typ!r} "
                                     f"(expected one of {', '.join(FIELD_TYPES)})")
        if name in columns:
            raise DataError(path, 1, f"header names column {name!r} twice")
        columns[name] = typ

    # Data lines; blank lines (a trailing newline, say) are skipped but still counted.
    numbers = [i for i, line in enumerate(lines) if i and line]
    rows = [lines[i].split("\t") for i in numbers]
    lines_arr = np.asarray(numbers, dtype=np.int64) + 1
    widths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    bad = np.flatnonzero(widths != len(columns))
    if len(bad):
        r = bad[0]
        raise DataError(path, int(lines_arr[r]), f"expected {len(columns)} tab-separated fields as in the "
                                                 f"header, found {widths[r]}")
    cols = dict(zip(columns, zip(*rows))) if rows else {name: () for name in columns}
    return _Table(path, columns, cols, lines_arr, raw)


def _floats(table: _Table, name: str, *, allow_empty: bool = False) -> np.ndarray:
    """A float column as float64; with ``allow_empty`` an empty field is a missing value (NaN)."""
    values = table.cols[name]
    present = np.array([bool(v.strip()) for v in values], dtype=bool) if allow_empty else None
    text = [v if p else "nan" for v, p in zip(values, present)] if allow_empty else values
    try:
        out = np.array(text, dtype=np.float64)
    except ValueError:  # find the culprit (Python's float is also a little more lenient than numpy's)
        parsed = []
        for i, v in enumerate(text):
            try:
                parsed.append(float(v))
            except ValueError:
                problem = f"{name} is empty" if not v.strip() else f"{name}: cannot read {v!r} as a number"
                raise DataError(table.path, int(table.lines[i]), problem) from None
        out = np.array(parsed, dtype=np.float64)
    bad = ~np.isfinite(out)
    if allow_empty:
        bad &= present
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(table.path, int(table.lines[i]), f"{name}: {values[i]!r} is not a finite number")
    return out


def _tokens(table: _Table, name: str) -> tuple[np.ndarray, list[str]]:
    """Intern a token column: 0-based codes in order of first appearance, and the distinct tokens.

    A dict does the interning (it hashes each string once, like the line parsing itself); everything after
    this works on the integer codes with numpy.
    """
    values = table.cols[name]
    seen: dict[str, int] = {}
    codes = np.fromiter((seen.setdefault(v, len(seen)) for v in values), dtype=np.int64, count=len(values))
    if "" in seen:
        i = int(np.flatnonzero(codes == seen[""])[0])
        raise DataError(table.path, int(table.lines[i]), f"empty {name}")
    return codes, list(seen)


def _first_appearance(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Renumber integer codes 0, 1, ... in order of first appearance; returns (new codes, old code of each)."""
    uniq, first, inverse = np.unique(codes, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty(len(uniq), dtype=np.int64)
    rank[order] = np.arange(len(uniq))
    return rank[inverse.reshape(-1)], uniq[order]


# --- the reader -------------------------------------------------------------------------------------------

# The way out of a folder that holds no dataset, appended to its error.
ATOMIC_HINT = ("expected RecBole atomic files: <name>.inter, tab-separated, with a header such as "
               "'user_id:token<TAB>item_id:token<TAB>timestamp:float' (`recserve data fetch ml-100k --dest DIR` or "
               "`recserve data synthetic --dest DIR` writes some)")


def _dataset_name(data_dir: Path, name: str | None) -> str:
    if not data_dir.is_dir():
        raise DataError(data_dir, None, f"no such dataset folder; {ATOMIC_HINT}")
    if name is not None:
        return name[: -len(".inter")] if name.endswith(".inter") else name
    found = sorted(p.stem for p in data_dir.glob("*.inter"))
    if not found:
        raise DataError(data_dir, None, f"no *.inter file in the folder; {ATOMIC_HINT}")
    if len(found) > 1:
        raise DataError(data_dir, None, f"several *.inter files ({', '.join(found)}): say which with name=")
    return found[0]


def _k_core(user: np.ndarray, item: np.ndarray, keep: np.ndarray, k: int) -> np.ndarray:
    """Drop users and items with fewer than k kept interactions, repeatedly, until none is left to drop."""
    n_users, n_items = int(user.max()) + 1, int(item.max()) + 1
    while True:
        u_count = np.bincount(user[keep], minlength=n_users)
        i_count = np.bincount(item[keep], minlength=n_items)
        drop = keep & ((u_count[user] < k) | (i_count[item] < k))
        if not drop.any():
            return keep
        keep = keep & ~drop


def read_atomic(data_dir: str | Path, name: str | None = None, *, min_rating: float | None = None,
                k_core: int = 0, item_fields: Sequence[str] | None = None) -> InteractionData:
    """Read ``<data_dir>/<name>.inter`` and, if present, ``<data_dir>/<name>.item``.

    name: the dataset name; by default the single ``*.inter`` file of the folder.
    min_rating: keep interactions rated at least this (the file needs a rating column).
    k_core: drop users and items with fewer than ``k_core`` interactions, repeatedly until stable
        (RecBole's ``user_inter_num_interval``/``item_inter_num_interval`` of ``[k,inf)``); 0 or 1 keeps all.
    item_fields: the ``.item`` fields to read; by default every token, token_seq and float field.
    """
    if k_core < 0:
        raise ValueError(f"k_core must be >= 0, got {k_core}")
    data_dir = Path(data_dir)
    name = _dataset_name(data_dir, name)
    inter = _read_table(data_dir / f"{name}.inter")
    inter.require(USER, ("token",))
    inter.require(ITEM, ("token",))
    if RATING in inter.columns:
        inter.require(RATING, ("float",))
    if TIME in inter.columns:
        inter.require(TIME, ("float",))
    if not len(inter):
        raise DataError(inter.path, None, "no interactions: the file has only a header")

    user0, user_ids = _tokens(inter, USER)
    item0, item_ids = _tokens(inter, ITEM)
    rating = _floats(inter, RATING) if RATING in inter.columns else None
    timestamp = _floats(inter, TIME) if TIME in inter.columns else np.arange(len(inter), dtype=np.float64)

    keep = np.ones(len(inter), dtype=bool)
    if min_rating is not None:
        if rating is None:
            raise DataError(inter.path, 1, f"min_rating={min_rating} needs a rating column; the header has "
                                           f"{inter.header_text()}")
        keep &= rating >= min_rating
        if not keep.any():
            raise DataError(inter.path, None, f"no interactions left after the min_rating >= {min_rating} filter")
    if k_core > 1:
        keep = _k_core(user0, item0, keep, k_core)
        if not keep.any():
            raise DataError(inter.path, None, f"no interactions left after the {k_core}-core filter (users and "
                                              f"items with fewer than {k_core} interactions dropped repeatedly)")

    rows = np.flatnonzero(keep)
    user_codes, user_old = _first_appearance(user0[rows])
    item_codes, item_old = _first_appearance(item0[rows])
    users = Vocab.from_ids([user_ids[c] for c in user_old])
    items = Vocab.from_ids([item_ids[c] for c in item_old])
    user, item, timestamp = user_codes + 1, item_codes + 1, timestamp[rows]
    rating = None if rating is None else rating[rows].astype(np.float32)

    order = np.argsort(timestamp, kind="stable")
    order = order[np.argsort(user[order], kind="stable")]

    digest = hashlib.sha256()
    digest.update(b".inter\n%d\n" % len(inter.raw) + inter.raw)
    data = InteractionData(name=name, users=users, items=items, user=user[order], item=item[order],
                           timestamp=timestamp[order], rating=None if rating is None else rating[order])

    item_path = data_dir / f"{name}.item"
    if item_path.is_file():
        table = _read_table(item_path)
        _read_item_features(table, data, item_fields)
        digest.update(b".item\n%d\n" % len(table.raw) + table.raw)
    elif item_fields:
        raise DataError(item_path, None, f"file not found (item fields {list(item_fields)} were asked for)")
    data.fingerprint = digest.hexdigest()
    return data


def _read_item_features(table: _Table, data: InteractionData, item_fields: Sequence[str] | None) -> None:
    table.require(ITEM, ("token",))
    if item_fields is None:
        fields = [n for n, t in table.columns.items() if n != ITEM and t in FEATURE_TYPES]
    else:
        fields = list(item_fields)
        for f in fields:
            if f == ITEM or f not in table.columns:
                raise DataError(table.path, 1, f"no item field {f!r} in the header (columns: {table.header_text()})")
            if table.columns[f] not in FEATURE_TYPES:
                raise DataError(table.path, 1, f"item field {f!r} is {table.columns[f]}; only token, token_seq "
                                               f"and float fields can be read")

    codes, ids = _tokens(table, ITEM)
    if len(ids) < len(codes):  # an item listed twice: name the second listing
        first = np.unique(codes, return_index=True)[1]  # codes are 0..len(ids)-1: first row of each
        dup = int(np.flatnonzero(first[codes] != np.arange(len(codes)))[0])
        raise DataError(table.path, int(table.lines[dup]), f"item_id {ids[codes[dup]]!r} is listed again "
                                                           f"(first on line {table.lines[first[codes[dup]]]})")
    index_of = np.array([data.items.index.get(s, 0) for s in ids], dtype=np.int64)[codes]
    kept = np.flatnonzero(index_of)          # .item rows of items that occur in .inter, file order
    target = index_of[kept]                  # their item indices
    n_rows = len(data.items)

    for f in fields:
        if table.columns[f] == "float":
            values = _floats(table, f, allow_empty=True)[kept]
            known = ~np.isnan(values)
            out = np.zeros(n_rows, dtype=np.float32)
            if known.any():
                out[1:] = values[known].mean()   # missing -> mean of the known values (RecBole's fill rule)
            out[target[known]] = values[known]
            data.item_floats[f] = out
            continue
        column = table.cols[f]
        if table.columns[f] == "token":  # the whole field is one token; empty = missing
            token_lists = [[column[r]] if column[r] else [] for r in kept]
        else:
            token_lists = [column[r].split() for r in kept]
        lengths = np.fromiter(map(len, token_lists), dtype=np.int64, count=len(token_lists))
        seen: dict[str, int] = {}
        flat = np.fromiter((seen.setdefault(t, len(seen) + 1) for ts in token_lists for t in ts),
                           dtype=np.int64, count=int(lengths.sum()))
        matrix = np.zeros((n_rows, max(1, int(lengths.max(initial=0)))), dtype=np.int64)
        starts = np.cumsum(lengths) - lengths
        matrix[np.repeat(target, lengths), np.arange(len(flat)) - np.repeat(starts, lengths)] = flat
        data.item_features[f] = matrix
        data.feature_vocabs[f] = Vocab.from_ids(list(seen))
