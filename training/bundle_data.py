"""What a bundle carries besides its graphs, and how it is saved beside a checkpoint for later re-export."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


class ExportError(RuntimeError):
    """A bundle that cannot be written; defined here, free of torch, so the CLI can catch it cheaply."""


@dataclass
class BundleData:
    """Everything a bundle carries besides the graphs."""

    items: list[str]                        # external item ids of indices 1..N
    item_inputs: dict[str, np.ndarray]      # the item encoder's inputs for indices 1..N
    max_history: int
    users: list[str] | None = None          # ConvNCF: external user ids of indices 1..U
    histories: dict[str, list[str]] | None = None
    tokenizer: dict | None = None           # NRMS: the tokenizer.json content
    metrics: dict = field(default_factory=dict)
    data_fingerprint: str = ""
    training: dict = field(default_factory=dict)


SCALARS = ("max_history", "data_fingerprint", "training")


def write_data_files(data: BundleData, folder: Path) -> None:
    """The bundle's plain data files (docs/bundle.md): id maps, item inputs, histories, tokenizer."""
    (folder / "items.json").write_text(json.dumps(data.items, ensure_ascii=False))
    np.savez(folder / "item_inputs.npz", **{k: np.ascontiguousarray(v) for k, v in data.item_inputs.items()})
    for name in ("users", "histories", "tokenizer"):
        value = getattr(data, name)
        path = folder / f"{name}.json"
        if value is not None:
            path.write_text(json.dumps(value, ensure_ascii=False))
        elif path.exists():
            path.unlink()


def save_bundle_data(data: BundleData, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_data_files(data, folder)
    (folder / "info.json").write_text(json.dumps({k: getattr(data, k) for k in SCALARS}))


def load_bundle_data(folder: Path) -> BundleData:
    if not (folder / "items.json").exists():
        raise FileNotFoundError(f"no id map at {folder / 'items.json'}: the checkpoint's bundle data is missing")
    with np.load(folder / "item_inputs.npz", allow_pickle=False) as npz:
        item_inputs = {k: npz[k] for k in npz.files}
    optional = {name: json.loads((folder / f"{name}.json").read_text())
                for name in ("users", "histories", "tokenizer") if (folder / f"{name}.json").exists()}
    info = json.loads((folder / "info.json").read_text())
    return BundleData(items=json.loads((folder / "items.json").read_text()), item_inputs=item_inputs, **optional, **info)
