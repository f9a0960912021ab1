"""What a bundle carries besides its graphs, and how those plain data files are written (docs/bundle.md)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bundle.contract import (FALLBACK_FILE, FALLBACK_KINDS, HISTORY_FILES, ITEM_IDS_FILES, ITEM_INPUTS_FILE,
                             ITEM_VECTORS_FILE, TOKENIZER_FILE, USER_IDS_FILES)
from bundle.idmap import Histories, IdMap, write_histories, write_idmap


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


def write_data_files(data: BundleData, folder: Path) -> None:
    """The bundle's plain data files but the item vectors: id maps, item inputs, histories, tokenizer, fallback
    ranking (a file the data does not have is removed, so a folder can be written again)."""
    write_idmap(folder, ITEM_IDS_FILES[0].removesuffix(".npy"), data.items)
    np.savez(folder / ITEM_INPUTS_FILE, **{k: np.ascontiguousarray(v) for k, v in data.item_inputs.items()})
    for name in (*USER_IDS_FILES, *HISTORY_FILES, TOKENIZER_FILE, FALLBACK_FILE):
        (folder / name).unlink(missing_ok=True)
    if data.users is not None:
        write_idmap(folder, USER_IDS_FILES[0].removesuffix(".npy"), data.users)
    if data.histories is not None:
        write_histories(folder, data.histories, {item: i for i, item in enumerate(data.items, start=1)})
    if data.tokenizer is not None:
        (folder / TOKENIZER_FILE).write_text(json.dumps(data.tokenizer, ensure_ascii=False))
    if data.fallback is not None:
        np.save(folder / FALLBACK_FILE, np.asarray(data.fallback, dtype=np.int32))


def write_item_vectors(folder: Path, vectors: np.ndarray) -> None:
    """`item_vectors.npy`: float32 [N + 1, D] with row 0 zeros, from the item encoder's [N, D] output."""
    out = np.lib.format.open_memmap(folder / ITEM_VECTORS_FILE, mode="w+", dtype=np.float32,
                                    shape=(vectors.shape[0] + 1, vectors.shape[1]))
    out[0] = 0.0
    out[1:] = vectors
    out.flush()
    del out


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
    """The fields written by `write_data_files`, read back (for re-exporting a checkpoint). Reads the JSON id
    maps of checkpoints saved before bundles carried arrays too."""
    if not (folder / ITEM_IDS_FILES[0]).exists() and not (folder / "items.json").exists():
        raise FileNotFoundError(f"no id map at {folder / ITEM_IDS_FILES[0]}: the checkpoint's bundle data is missing")
    with np.load(folder / ITEM_INPUTS_FILE, allow_pickle=False) as npz:
        item_inputs = {k: npz[k] for k in npz.files}
    if (folder / "items.json").exists():  # before recserve-bundle/2
        out = {name: json.loads((folder / f"{name}.json").read_text())
               for name in ("items", "users", "histories") if (folder / f"{name}.json").exists()}
    else:
        items = _idmap(folder, ITEM_IDS_FILES)
        out = {"items": items.all()}
        if (folder / USER_IDS_FILES[0]).exists():
            out["users"] = _idmap(folder, USER_IDS_FILES).all()
        if (folder / HISTORY_FILES[0]).exists():
            histories = Histories(_idmap(folder, HISTORY_FILES[:2]), *(np.load(folder / f, allow_pickle=False)
                                                                     for f in HISTORY_FILES[2:]))
            out["histories"] = histories.as_ids(lambda i: out["items"][i - 1])
    if (folder / TOKENIZER_FILE).exists():
        out["tokenizer"] = json.loads((folder / TOKENIZER_FILE).read_text())
    if (folder / FALLBACK_FILE).exists():
        out["fallback"] = np.load(folder / FALLBACK_FILE, allow_pickle=False)
    return {**out, "item_inputs": item_inputs}


def _idmap(folder: Path, files: tuple[str, str]) -> IdMap:
    return IdMap(*(np.load(folder / f, allow_pickle=False) for f in files))
