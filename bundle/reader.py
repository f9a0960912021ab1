"""Read and verify one bundle folder (docs/bundle.md). Plain files only: JSON, ONNX bytes, .npz without pickles."""
from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bundle.contract import (FALLBACK_FILE, GRAPHS, HISTORIES_FILE, ITEM_INPUTS_FILE, ITEMS_FILE, LATEST_FILE,
                             MANIFEST_FILE, TOKENIZER_FILE, USERS_FILE, BundleError, check_manifest,
                             sha256_bytes)
from bundle.data import fallback_problem


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
    fallback: np.ndarray | None = None  # int64 indices 1..N, best first; None in bundles made before it
    tokenizer_spec: Any = None  # the parsed tokenizer.json, from the bytes whose hash was checked

    @property
    def fallback_kind(self) -> str | None:
        """How the fallback ranking was computed (contract.FALLBACK_KINDS), None without one."""
        return self.manifest.get("fallback")

    @property
    def model(self) -> str:
        """The served name (the exporter's "name", e.g. a variant), defaulting to the kind."""
        return self.manifest.get("name") or self.manifest["model"]

    @property
    def kind(self) -> str:
        """The model kind it was trained as (a key of the training registry, e.g. bert4rec)."""
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
        path = self.path / TOKENIZER_FILE
        return path if TOKENIZER_FILE in self.manifest["files"] else None

    def graph_io(self, graph: str, side: str) -> list[str]:
        """Input or output tensor names of a graph, as the manifest lists them."""
        return [t["name"] if isinstance(t, dict) else str(t) for t in self.manifest["graphs"][graph][side]]


def discover(artifacts: Path) -> dict[str, Path]:
    """Model name -> model folder, for every subfolder of `artifacts` that has a LATEST file."""
    if not artifacts.is_dir():
        return {}
    return {d.name: d for d in sorted(artifacts.iterdir()) if (d / LATEST_FILE).is_file()}


def _inside(path: Path, folder: Path, what: str) -> Path:
    """`path` with its links followed; BundleError unless that lies inside `folder` (links followed too).
    A bundle may come from someone else: a folder or file linking out of the tree would serve, or read, what
    the tree's owner never put there."""
    try:
        real, inside = path.resolve(), folder.resolve()
    except (OSError, RuntimeError) as exc:  # a loop of links: RuntimeError before Python 3.13, OSError after
        raise BundleError(path, f"cannot follow its links ({exc})") from exc
    if real != inside and real.is_relative_to(inside):
        return real
    raise BundleError(path, f"links to {real}, outside the {what} folder {folder}: refused")


def read_latest(model_dir: Path) -> str:
    """What `model_dir/LATEST` says, stripped ("" when there is no LATEST); a LATEST that links out of the model
    folder, or is no regular file, is refused unread."""
    latest = model_dir / LATEST_FILE
    if not latest.exists() and not latest.is_symlink():
        return ""
    _readable(latest, model_dir, "model")
    try:
        return latest.read_text().strip()
    except (OSError, ValueError) as exc:
        raise BundleError(latest, f"unreadable ({exc})") from exc


def _is_version_name(name: str) -> bool:
    return bool(name) and "/" not in name and not name.startswith(".")


def resolve_latest(model_dir: Path, artifacts: Path | None = None) -> Path:
    """The bundle folder named by `model_dir/LATEST`. The version folder must lie inside the model folder once
    links are followed, and, given `artifacts`, the model folder inside the artifacts folder."""
    if artifacts is not None:
        _inside(model_dir, artifacts, "artifacts")
    latest, name = model_dir / LATEST_FILE, read_latest(model_dir)
    if not _is_version_name(name):
        raise BundleError(latest, f"does not name a version folder (read {name!r})")
    path = model_dir / name
    if not path.is_dir():
        raise BundleError(latest, f"names {name!r}, which is not a folder")
    _inside(path, model_dir, "model")
    return path


def older_versions(model_dir: Path, latest: str, artifacts: Path | None = None) -> list[Path]:
    """The version folders of `model_dir` that a model may fall back to when the one LATEST names (`latest`, as
    read) is refused: those whose name sorts before it (names begin with the UTC timestamp; every folder when
    `latest` names no version), newest first. Hidden folders (`.tmp-*`: an export being written) are skipped,
    and so are folders with no manifest.json (e.g. `train/`) and folders linking out of the model folder. Each must
    still be loaded, and verified, to serve. Given `artifacts`, a model folder linking out of it is refused (as
    by resolve_latest): none of its versions is served."""
    if artifacts is not None:
        _inside(model_dir, artifacts, "artifacts")
    found = []
    for path in model_dir.iterdir():
        name = path.name
        if name.startswith(".") or name == latest or (_is_version_name(latest) and name >= latest):
            continue
        try:
            if path.is_dir() and (path / MANIFEST_FILE).exists() and _inside(path, model_dir, "model"):
                found.append(path)
        except BundleError:
            continue
    return sorted(found, key=lambda p: p.name, reverse=True)


def read_verified(path: Path, manifest: dict[str, Any]) -> dict[str, bytes]:
    """Every file the manifest lists, read once and checked against its sha256 (no check-then-read race)."""
    contents = {}
    for name, expected in manifest["files"].items():
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise BundleError(path, f"file name {name!r} leaves the bundle folder")
        file = path / name
        _readable(file, path)
        try:
            data = file.read_bytes()
        except OSError as exc:
            raise BundleError(file, f"listed in manifest.json but unreadable ({exc.strerror or exc})") from exc
        actual = sha256_bytes(data)
        if actual != expected:
            raise BundleError(file, f"sha256 mismatch: manifest says {str(expected)[:12]}..., file has {actual[:12]}...")
        contents[name] = data
    return contents


def _readable(file: Path, folder: Path, what: str = "bundle") -> None:
    """BundleError unless `file` is a regular file inside `folder` once links are followed (a link out of the
    bundle, a FIFO or a device is never read: /dev/zero would never end, a FIFO would block)."""
    _inside(file, folder, what)
    if file.exists() and not file.is_file():
        raise BundleError(file, "not a regular file")


def _json(where: Path, data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError as exc:
        raise BundleError(where, f"unreadable JSON ({exc})") from exc


def _fallback(path: Path, manifest: dict[str, Any], data: dict[str, bytes], n_items: int) -> np.ndarray | None:
    """The fallback ranking as int64 indices, None for a bundle without one (check_manifest pairs file and kind)."""
    if FALLBACK_FILE not in data:
        return None
    try:
        rows = np.load(io.BytesIO(data[FALLBACK_FILE]), allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise BundleError(path / FALLBACK_FILE, f"unreadable ({exc})") from exc
    problem = fallback_problem(rows, manifest["fallback"], n_items)
    if problem:
        raise BundleError(path / FALLBACK_FILE, problem)
    return rows.astype(np.int64)


def load_bundle(path: Path) -> Bundle:
    """Read and verify the bundle in `path`; raises BundleError naming the offending file."""
    _readable(path / MANIFEST_FILE, path)
    try:
        manifest = _json(path / MANIFEST_FILE, (path / MANIFEST_FILE).read_bytes())
    except OSError as exc:
        raise BundleError(path / MANIFEST_FILE, f"unreadable ({exc.strerror or exc})") from exc
    check_manifest(path, manifest)
    data = read_verified(path, manifest)
    graphs = {g: data[manifest["graphs"][g]["file"]] for g in GRAPHS}
    items = _json(path / ITEMS_FILE, data[ITEMS_FILE])
    if not isinstance(items, list) or len(items) != int(manifest.get("n_items", len(items))):
        raise BundleError(path / ITEMS_FILE, f"expected a list of {manifest.get('n_items')} item ids")
    try:
        with np.load(io.BytesIO(data[ITEM_INPUTS_FILE]), allow_pickle=False) as npz:
            item_inputs = {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as exc:
        raise BundleError(path / ITEM_INPUTS_FILE, f"unreadable ({exc})") from exc
    for name, array in item_inputs.items():
        if array.shape[0] != len(items):
            raise BundleError(path / ITEM_INPUTS_FILE, f"{name!r} has {array.shape[0]} rows for {len(items)} items")
    users = _json(path / USERS_FILE, data[USERS_FILE]) if USERS_FILE in data else []
    histories = _json(path / HISTORIES_FILE, data[HISTORIES_FILE]) if HISTORIES_FILE in data else {}
    return Bundle(path, manifest, graphs, [str(i) for i in items], item_inputs,
                  [str(u) for u in users], {str(u): [str(i) for i in h] for u, h in histories.items()},
                  _fallback(path, manifest, data, len(items)),
                  _json(path / TOKENIZER_FILE, data[TOKENIZER_FILE]) if TOKENIZER_FILE in data else None)
