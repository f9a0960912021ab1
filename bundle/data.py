"""What a bundle carries besides its graphs, and how those plain data files are written (docs/bundle.md)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bundle.contract import HISTORIES_FILE, ITEM_INPUTS_FILE, ITEMS_FILE, TOKENIZER_FILE, USERS_FILE


@dataclass
class BundleData:
    """Everything a bundle carries besides the graphs."""

    items: list[str]                        # external item ids of indices 1..N
    item_inputs: dict[str, np.ndarray]      # the item encoder's inputs for indices 1..N
    max_history: int
    users: list[str] | None = None          # user_id models: external user ids of indices 1..U
    histories: dict[str, list[str]] | None = None
    tokenizer: dict | None = None           # text-encoded items: the tokenizer.json content
    metrics: dict = field(default_factory=dict)
    data_fingerprint: str = ""
    training: dict = field(default_factory=dict)


# The optional JSON files, by BundleData field.
OPTIONAL_FILES = {"users": USERS_FILE, "histories": HISTORIES_FILE, "tokenizer": TOKENIZER_FILE}


def write_data_files(data: BundleData, folder: Path) -> None:
    """The bundle's plain data files: id maps, item inputs, histories, tokenizer."""
    (folder / ITEMS_FILE).write_text(json.dumps(data.items, ensure_ascii=False))
    np.savez(folder / ITEM_INPUTS_FILE, **{k: np.ascontiguousarray(v) for k, v in data.item_inputs.items()})
    for name, file in OPTIONAL_FILES.items():
        value, path = getattr(data, name), folder / file
        if value is not None:
            path.write_text(json.dumps(value, ensure_ascii=False))
        elif path.exists():
            path.unlink()


def read_data_files(folder: Path) -> dict:
    """The fields written by `write_data_files`, read back (for re-exporting a checkpoint)."""
    if not (folder / ITEMS_FILE).exists():
        raise FileNotFoundError(f"no id map at {folder / ITEMS_FILE}: the checkpoint's bundle data is missing")
    with np.load(folder / ITEM_INPUTS_FILE, allow_pickle=False) as npz:
        item_inputs = {k: npz[k] for k in npz.files}
    optional = {name: json.loads((folder / file).read_text())
                for name, file in OPTIONAL_FILES.items() if (folder / file).exists()}
    return {"items": json.loads((folder / ITEMS_FILE).read_text()), "item_inputs": item_inputs, **optional}
