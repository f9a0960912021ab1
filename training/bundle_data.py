"""A bundle's data saved beside a checkpoint (`<run>/bundle_data/`), so a checkpoint can be re-exported later."""
from __future__ import annotations

import json
from pathlib import Path

from bundle.data import BundleData, read_data_files, write_data_files


class ExportError(RuntimeError):
    """A bundle that cannot be written; defined here, free of torch, so the CLI can catch it cheaply."""


SCALARS = ("max_history", "data_fingerprint", "training", "fallback_kind", "metrics")


def save_bundle_data(data: BundleData, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_data_files(data, folder)
    (folder / "info.json").write_text(json.dumps({k: getattr(data, k) for k in SCALARS}))


def load_bundle_data(folder: Path) -> BundleData:
    files = read_data_files(folder)
    info = json.loads((folder / "info.json").read_text())
    return BundleData(**files, **info)
