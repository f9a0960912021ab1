"""What a bundle carries besides its graphs, and how those plain data files are written (docs/bundle.md)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bundle.contract import (FALLBACK_FILE, FALLBACK_KINDS, HISTORIES_FILE, ITEM_INPUTS_FILE, ITEMS_FILE,
                             TOKENIZER_FILE, USERS_FILE)


@dataclass
class BundleData:
    """Everything a bundle carries besides the graphs."""

    items: list[str]                        # external item ids of indices 1..N
    item_inputs: dict[str, np.ndarray]      # the item encoder's inputs for indices 1..N
    max_history: int
    users: list[str] | None = None          # user_id models: external user ids of indices 1..U
    histories: dict[str, list[str]] | None = None
    tokenizer: dict | None = None           # text-encoded items: the tokenizer.json content
    fallback: np.ndarray | None = None      # indices 1..N, best first: the ranking for users the model cannot score
    fallback_kind: str | None = None        # how `fallback` was computed: one of contract.FALLBACK_KINDS
    metrics: dict = field(default_factory=dict)
    data_fingerprint: str = ""
    training: dict = field(default_factory=dict)


# The optional JSON files, by BundleData field.
OPTIONAL_FILES = {"users": USERS_FILE, "histories": HISTORIES_FILE, "tokenizer": TOKENIZER_FILE}


def write_data_files(data: BundleData, folder: Path) -> None:
    """The bundle's plain data files: id maps, item inputs, histories, tokenizer, fallback ranking."""
    (folder / ITEMS_FILE).write_text(json.dumps(data.items, ensure_ascii=False))
    np.savez(folder / ITEM_INPUTS_FILE, **{k: np.ascontiguousarray(v) for k, v in data.item_inputs.items()})
    for name, file in OPTIONAL_FILES.items():
        value, path = getattr(data, name), folder / file
        if value is not None:
            path.write_text(json.dumps(value, ensure_ascii=False))
        elif path.exists():
            path.unlink()
    if data.fallback is not None:
        np.save(folder / FALLBACK_FILE, np.asarray(data.fallback, dtype=np.int32))
    elif (folder / FALLBACK_FILE).exists():
        (folder / FALLBACK_FILE).unlink()


def fallback_problem(rows: np.ndarray, kind: str | None, n_items: int) -> str | None:
    """What is wrong with a fallback ranking of a catalog of `n_items`, or None: it must be a 1-D integer
    array of distinct indices 1..n_items of a known kind."""
    if kind not in FALLBACK_KINDS:
        return f"unknown fallback kind {kind!r} (expected one of {sorted(FALLBACK_KINDS)})"
    if rows.ndim != 1 or not np.issubdtype(rows.dtype, np.integer):
        return f"expected a 1-D integer array, got {rows.dtype} of shape {rows.shape}"
    if rows.size and (rows.min() < 1 or rows.max() > n_items):
        return f"indices must lie in 1..{n_items}, found {rows.min()}..{rows.max()}"
    if np.unique(rows).size != rows.size:
        return "an index is listed twice"
    return None


def read_data_files(folder: Path) -> dict:
    """The fields written by `write_data_files`, read back (for re-exporting a checkpoint)."""
    if not (folder / ITEMS_FILE).exists():
        raise FileNotFoundError(f"no id map at {folder / ITEMS_FILE}: the checkpoint's bundle data is missing")
    with np.load(folder / ITEM_INPUTS_FILE, allow_pickle=False) as npz:
        item_inputs = {k: npz[k] for k in npz.files}
    optional = {name: json.loads((folder / file).read_text())
                for name, file in OPTIONAL_FILES.items() if (folder / file).exists()}
    if (folder / FALLBACK_FILE).exists():
        optional["fallback"] = np.load(folder / FALLBACK_FILE, allow_pickle=False)
    return {"items": json.loads((folder / ITEMS_FILE).read_text()), "item_inputs": item_inputs, **optional}
