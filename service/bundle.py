"""Read and verify one bundle folder (docs/bundle.md). Plain files only: JSON, ONNX bytes, .npz without pickles."""
from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "recserve-bundle/1"
SCORERS = {"dot", "dot_sigmoid", "pairwise"}
USER_INPUTS = {"user_id", "sequence", "news_vectors"}
GRAPHS = ("item_encoder", "user_encoder", "scorer")


class BundleError(ValueError):
    """A bundle that must not be served; the message names the folder, the file and the problem."""

    def __init__(self, where: Path, problem: str):
        super().__init__(f"{where}: {problem}")


@dataclass
class Bundle:
    """A verified bundle held in memory: manifest, graph bytes, id maps, catalog inputs and histories."""

    path: Path
    manifest: dict[str, Any]
    graphs: dict[str, bytes]
    items: list[str]
    item_inputs: dict[str, np.ndarray]
    users: list[str] = field(default_factory=list)
    histories: dict[str, list[str]] = field(default_factory=dict)

    @property
    def model(self) -> str:
        """The served name (the exporter's "name", e.g. a variant), defaulting to the kind."""
        return self.manifest.get("name") or self.manifest["model"]

    @property
    def kind(self) -> str:
        """The model family: nrms, convncf, gru4recf or bert4rec."""
        return self.manifest["model"]

    @property
    def version(self) -> str:
        return self.manifest["version"]

    @property
    def dim(self) -> int:
        return int(self.manifest["dim"])

    @property
    def scorer(self) -> str:
        return self.manifest["scorer"]

    @property
    def user_input(self) -> str:
        return self.manifest["user_input"]

    @property
    def max_history(self) -> int:
        return int(self.manifest.get("max_history") or 50)

    @property
    def tokenizer_path(self) -> Path | None:
        path = self.path / "tokenizer.json"
        return path if "tokenizer.json" in self.manifest["files"] else None

    def graph_io(self, graph: str, side: str) -> list[str]:
        """Input or output tensor names of a graph, as the manifest lists them."""
        return [t["name"] if isinstance(t, dict) else str(t) for t in self.manifest["graphs"][graph][side]]


def discover(artifacts: Path) -> dict[str, Path]:
    """Model name -> model folder, for every subfolder of `artifacts` that has a LATEST file."""
    if not artifacts.is_dir():
        return {}
    return {d.name: d for d in sorted(artifacts.iterdir()) if (d / "LATEST").is_file()}


def resolve_latest(model_dir: Path) -> Path:
    """The bundle folder named by `model_dir/LATEST`."""
    latest = model_dir / "LATEST"
    name = latest.read_text().strip() if latest.is_file() else ""
    if not name or "/" in name or name.startswith("."):
        raise BundleError(latest, f"does not name a version folder (read {name!r})")
    path = model_dir / name
    if not path.is_dir():
        raise BundleError(latest, f"names {name!r}, which is not a folder")
    return path


def read_verified(path: Path, manifest: dict[str, Any]) -> dict[str, bytes]:
    """Every file the manifest lists, read once and checked against its sha256 (no check-then-read race)."""
    contents = {}
    for name, expected in manifest["files"].items():
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise BundleError(path, f"file name {name!r} leaves the bundle folder")
        file = path / name
        try:
            data = file.read_bytes()
        except OSError as exc:
            raise BundleError(file, f"listed in manifest.json but unreadable ({exc.strerror or exc})") from exc
        actual = hashlib.sha256(data).hexdigest()
        if actual != expected:
            raise BundleError(file, f"sha256 mismatch: manifest says {str(expected)[:12]}..., file has {actual[:12]}...")
        contents[name] = data
    return contents


def _json(where: Path, data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError as exc:
        raise BundleError(where, f"unreadable JSON ({exc})") from exc


def _check_manifest(path: Path, m: Any) -> None:
    where = path / "manifest.json"
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise BundleError(where, f"'format' must be {FORMAT!r}")
    for key in ("model", "version", "dim", "scorer", "user_input", "graphs", "files"):
        if key not in m:
            raise BundleError(where, f"missing key {key!r}")
    if m["scorer"] not in SCORERS:
        raise BundleError(where, f"unknown scorer {m['scorer']!r} (expected one of {sorted(SCORERS)})")
    if m["user_input"] not in USER_INPUTS:
        raise BundleError(where, f"unknown user_input {m['user_input']!r} (expected one of {sorted(USER_INPUTS)})")
    for graph in GRAPHS:
        if m["graphs"].get(graph, {}).get("file") not in m["files"]:
            raise BundleError(where, f"graph {graph!r} has no file listed under 'files'")


def load_bundle(path: Path) -> Bundle:
    """Read and verify the bundle in `path`; raises BundleError naming the offending file."""
    try:
        manifest = _json(path / "manifest.json", (path / "manifest.json").read_bytes())
    except OSError as exc:
        raise BundleError(path / "manifest.json", f"unreadable ({exc.strerror or exc})") from exc
    _check_manifest(path, manifest)
    data = read_verified(path, manifest)
    for required in ("items.json", "item_inputs.npz"):
        if required not in data:
            raise BundleError(path / "manifest.json", f"{required} is not listed under 'files'")
    graphs = {g: data[manifest["graphs"][g]["file"]] for g in GRAPHS}
    items = _json(path / "items.json", data["items.json"])
    if not isinstance(items, list) or len(items) != int(manifest.get("n_items", len(items))):
        raise BundleError(path / "items.json", f"expected a list of {manifest.get('n_items')} item ids")
    try:
        with np.load(io.BytesIO(data["item_inputs.npz"]), allow_pickle=False) as npz:
            item_inputs = {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as exc:
        raise BundleError(path / "item_inputs.npz", f"unreadable ({exc})") from exc
    for name, array in item_inputs.items():
        if array.shape[0] != len(items):
            raise BundleError(path / "item_inputs.npz", f"{name!r} has {array.shape[0]} rows for {len(items)} items")
    users = _json(path / "users.json", data["users.json"]) if "users.json" in data else []
    histories = _json(path / "histories.json", data["histories.json"]) if "histories.json" in data else {}
    return Bundle(path, manifest, graphs, [str(i) for i in items], item_inputs,
                  [str(u) for u in users], {str(u): [str(i) for i in h] for u, h in histories.items()})
