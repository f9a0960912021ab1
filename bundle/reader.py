"""Read and verify one bundle folder (docs/bundle.md). Plain files only: JSON, ONNX bytes, .npy and .npz
without pickles. Every listed file is checked against its sha256; a .npy is then memory-mapped from the very
file descriptor it was hashed through (no second open: a file swapped meanwhile is never the one mapped)."""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bundle.contract import (FALLBACK_FILE, GRAPHS, HISTORY_FILES, ITEM_IDS_FILES, ITEM_VECTORS_FILE, LATEST_FILE,
                             MANIFEST_FILE, TOKENIZER_FILE, USER_IDS_FILES, BundleError, check_manifest)
from bundle.data import fallback_problem
from bundle.idmap import Histories, IdMap


@dataclass
class Bundle:
    """A verified bundle: manifest, graph bytes, and its arrays memory-mapped (id maps, item vectors,
    histories), so that loading reads no more than the hash check did and workers share the pages."""

    path: Path
    manifest: dict[str, Any]
    graphs: dict[str, bytes]
    items: IdMap                  # positions 0..N-1 = item indices 1..N
    item_vectors: np.ndarray      # float32 [N + 1, D], row 0 zeros
    users: IdMap | None = None    # user_id models: positions 0..U-1 = user indices 1..U
    histories: Histories | None = None
    fallback: np.ndarray | None = None  # int64 indices 1..N, best first; None in bundles made before it
    tokenizer_spec: Any = None  # the parsed tokenizer.json, from the bytes whose hash was checked
    # Per graph, its large initializers by name, memory-mapped from their .npy files (training/graph_weights.py)
    graph_weights: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    index_file: Any = None  # the item index, open on the descriptor its hash was checked through

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


KEPT_AS_BYTES = (".onnx", ".json")  # what the reader parses from memory; other files are hashed only


def read_verified(path: Path, manifest: dict[str, Any], keep_open: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Every file the manifest lists, checked against its sha256 while read once: the bytes of the files the
    reader parses (KEPT_AS_BYTES), for a `.npy` a read-only memory map of the same file descriptor (no
    check-then-open race), for a file in `keep_open` (the index, which its library maps itself) the file, open
    on the same descriptor (closed when dropped), for anything else None."""
    contents = {}
    for name, expected in manifest["files"].items():
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise BundleError(path, f"file name {name!r} leaves the bundle folder")
        file = path / name
        _readable(file, path)
        try:
            with open(file, "rb") as f:
                digest, data = hashlib.sha256(), bytearray() if name.endswith(KEPT_AS_BYTES) else None
                for block in iter(lambda: f.read(1 << 22), b""):
                    digest.update(block)
                    if data is not None:
                        data += block
                actual = digest.hexdigest()
                if actual != expected:
                    raise BundleError(file, f"sha256 mismatch: manifest says {str(expected)[:12]}..., file has "
                                            f"{actual[:12]}...")
                contents[name] = (bytes(data) if data is not None else _map_npy(file, f) if name.endswith(".npy")
                                  else os.fdopen(os.dup(f.fileno()), "rb") if name in keep_open else None)
        except OSError as exc:
            raise BundleError(file, f"listed in manifest.json but unreadable ({exc.strerror or exc})") from exc
    return contents


def read_npy_header(f) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, Fortran order, dtype) from the header of the .npy open as `f`, at its start; leaves `f` at the
    array's first byte. ValueError for a format version numpy's public readers do not cover."""
    version = np.lib.format.read_magic(f)
    read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                   (2, 0): np.lib.format.read_array_header_2_0}.get(version)
    if read_header is None:
        raise ValueError(f".npy format version {version} is not supported")
    return read_header(f)


def _map_npy(where: Path, f) -> np.ndarray:
    """A read-only memory map of the .npy open as `f` (its header parsed by numpy; object arrays refused), as a
    plain ndarray whose base is the np.memmap."""
    try:
        f.seek(0)
        shape, fortran, dtype = read_npy_header(f)
        if dtype.hasobject:
            raise ValueError("an object array (pickles) is not allowed")
        if not np.prod(shape, dtype=np.int64):
            return np.zeros(shape, dtype=dtype)  # mmap cannot map an empty region
        mapped = np.memmap(f, dtype=dtype, mode="r", offset=f.tell(), shape=shape, order="F" if fortran else "C")
        # A plain array over the map (which stays its base): np.memmap's Python-level indexing and
        # __array_finalize__ cost a few us per slice, on every request that reads vectors.
        return mapped.view(np.ndarray)
    except ValueError as exc:
        raise BundleError(where, f"unreadable .npy ({exc})") from exc


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


def _fallback(path: Path, manifest: dict[str, Any], data: dict[str, Any], n_items: int) -> np.ndarray | None:
    """The fallback ranking as int64 indices, None for a bundle without one (check_manifest pairs file and kind)."""
    if FALLBACK_FILE not in data:
        return None
    rows = data[FALLBACK_FILE]
    problem = fallback_problem(rows, manifest["fallback"], n_items)
    if problem:
        raise BundleError(path / FALLBACK_FILE, problem)
    return np.asarray(rows, dtype=np.int64)


def _idmap(path: Path, data: dict[str, Any], files: tuple[str, str], expected: int | None) -> IdMap:
    try:
        ids = IdMap(data[files[0]], data[files[1]])
    except ValueError as exc:
        raise BundleError(path / files[0], str(exc)) from exc
    if expected is not None and len(ids) != expected:
        raise BundleError(path / files[0], f"holds {len(ids)} ids, the manifest says {expected}")
    return ids


def _histories(path: Path, data: dict[str, Any], n_items: int) -> Histories:
    users = _idmap(path, data, HISTORY_FILES[:2], None)
    offsets, items = data[HISTORY_FILES[2]], data[HISTORY_FILES[3]]
    try:
        histories = Histories(users, offsets, items)
    except ValueError as exc:
        raise BundleError(path / HISTORY_FILES[2], str(exc)) from exc
    if items.ndim != 1 or items.dtype.kind not in "iu" or (items.size and (items.min() < 1 or items.max() > n_items)):
        raise BundleError(path / HISTORY_FILES[3], f"expected item indices in 1..{n_items}")
    return histories


def load_bundle(path: Path) -> Bundle:
    """Read and verify the bundle in `path`; raises BundleError naming the offending file."""
    _readable(path / MANIFEST_FILE, path)
    try:
        manifest = _json(path / MANIFEST_FILE, (path / MANIFEST_FILE).read_bytes())
    except OSError as exc:
        raise BundleError(path / MANIFEST_FILE, f"unreadable ({exc.strerror or exc})") from exc
    check_manifest(path, manifest)
    index_file = manifest["index"]["file"] if manifest.get("index") else None
    data = read_verified(path, manifest, frozenset([index_file]) if index_file else frozenset())
    graphs = {g: data[manifest["graphs"][g]["file"]] for g in GRAPHS}
    items = _idmap(path, data, ITEM_IDS_FILES, int(manifest.get("n_items", len(data[ITEM_IDS_FILES[0]]))))
    vectors = data[ITEM_VECTORS_FILE]
    if vectors.dtype != np.float32 or vectors.shape != (len(items) + 1, int(manifest["dim"])):
        raise BundleError(path / ITEM_VECTORS_FILE, f"expected float32 [{len(items) + 1}, {manifest['dim']}] (row 0 "
                                                    f"padding), got {vectors.dtype} {list(vectors.shape)}")
    users = _idmap(path, data, USER_IDS_FILES, None) if USER_IDS_FILES[0] in data else None
    histories = _histories(path, data, len(items)) if HISTORY_FILES[0] in data else None
    weights = {g: {name: data[file] for name, file in manifest["graphs"][g].get("weights", {}).items()} for g in GRAPHS}
    return Bundle(path, manifest, graphs, items, vectors, users, histories,
                  _fallback(path, manifest, data, len(items)),
                  _json(path / TOKENIZER_FILE, data[TOKENIZER_FILE]) if TOKENIZER_FILE in data else None, weights,
                  data.get(index_file))
