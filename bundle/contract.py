"""The bundle contract in one place (docs/bundle.md): format version, graph and file names, the scorer and
user-input kinds, and how a manifest is written and checked. Training writes bundles with it, the service
reads them with it; neither restates a constant of this file."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

FORMAT = "recserve-bundle/2"  # 2: id maps, histories and item vectors as arrays (was JSON; no vectors)
OPSET = 17

# The three graphs, each in its own `<name>.onnx`.
GRAPHS = ("item_encoder", "user_encoder", "scorer")

# How a catalog is scored, in the bundle's own words:
#   dot          score = user . item (a whole catalog in one matrix product)
#   dot_sigmoid  the probability sigmoid(user . item); ranking uses the dot, responses the probability
#   pairwise     only scorer.onnx can score: it runs over (user, item) pairs in chunks
SCORERS = ("dot", "dot_sigmoid", "pairwise")
# What `score` in a response means for each scorer kind.
SCORE_MEANING = {"dot": "raw", "dot_sigmoid": "probability", "pairwise": "raw"}

# What the user encoder takes, with its input names:
#   user_id       user_idx [B] (1-based index into users.json)
#   sequence      item_seq [B, L] left-aligned item indices, seq_len [B] >= 1
#   news_vectors  history_vectors [B, H, D] item vectors of the history, history_mask [B, H]
USER_INPUTS = {
    "user_id": ("user_idx",),
    "sequence": ("item_seq", "seq_len"),
    "news_vectors": ("history_vectors", "history_mask"),
}

# Plain data files beside the graphs (.npy files are memory-mapped by the service: see bundle/idmap.py).
ITEM_IDS_FILES = ("item_ids.npy", "item_ids_order.npy")  # external item ids of indices 1..N, and their sort
ITEM_VECTORS_FILE = "item_vectors.npy"  # float32 [N + 1, D]: the item encoder's output, row 0 = zeros (padding)
ITEM_INPUTS_FILE = "item_inputs.npz"   # the item encoder's inputs of indices 1..N (for parity and re-export)
USER_IDS_FILES = ("user_ids.npy", "user_ids_order.npy")  # user_id models: external user ids of indices 1..U
# history models: users (an id map), int64 offsets [U + 1] and int32 item indices, each user's oldest first
HISTORY_FILES = ("history_users.npy", "history_users_order.npy", "history_offsets.npy", "history_items.npy")
TOKENIZER_FILE = "tokenizer.json"      # models whose new items are encoded from raw text
FALLBACK_FILE = "fallback.npy"         # the ranking for users the model cannot score: int32 indices, best first
MANIFEST_FILE = "manifest.json"
LATEST_FILE = "LATEST"

# The data files a bundle must have (docs/bundle.md): those of every bundle, those its `user_input` needs, and
# those an item-encoder input needs (a text input needs the tokenizer that makes it from a new item's title).
# A manifest that leaves one out is refused, not served with its known users unknown. HOLDS: what each holds.
HOLDS = {**dict.fromkeys(ITEM_IDS_FILES, "the item ids"), ITEM_VECTORS_FILE: "the catalog's item vectors",
         ITEM_INPUTS_FILE: "the item encoder's inputs", **dict.fromkeys(USER_IDS_FILES, "the user ids"),
         **dict.fromkeys(HISTORY_FILES, "the users' histories"), TOKENIZER_FILE: "the tokenizer of new items' titles"}
EVERY_BUNDLE_FILES = (*ITEM_IDS_FILES, ITEM_VECTORS_FILE, ITEM_INPUTS_FILE)
USER_INPUT_FILES = {"user_id": USER_IDS_FILES, "sequence": HISTORY_FILES, "news_vectors": HISTORY_FILES}
ITEM_INPUT_FILES = {"title_tokens": (TOKENIZER_FILE,), "input_ids": (TOKENIZER_FILE,)}
# How the fallback ranking (manifest key "fallback") was computed, from training data only:
#   popularity          training interactions per item (interaction models)
#   recency_popularity  training clicks, each weighted 0.5 ** (its age at the end of training / 1 day) (news)
FALLBACK_KINDS = ("popularity", "recency_popularity")


class BundleError(ValueError):
    """A bundle that must not be served; the message names the folder, the file and the problem."""

    def __init__(self, where: Path, problem: str):
        super().__init__(f"{where}: {problem}")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(folder: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Write `manifest.json` with the format and the sha256 of every other file in `folder`; returns it."""
    manifest = {"format": FORMAT, **manifest}
    manifest["files"] = {p.name: sha256_file(p) for p in sorted(folder.iterdir()) if p.name != MANIFEST_FILE}
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))
    return manifest


def required_files(m: dict[str, Any]) -> dict[str, str]:
    """The data files the bundle of manifest `m` must list under "files": file -> what needs it."""
    needs = {name: "every bundle" for name in EVERY_BUNDLE_FILES}
    for name in USER_INPUT_FILES.get(m.get("user_input"), ()):
        needs.setdefault(name, f"user_input {m['user_input']!r}")
    item_encoder = m.get("graphs", {}).get("item_encoder", {})
    for tensor in item_encoder.get("inputs", []) if isinstance(item_encoder, dict) else []:
        input_name = tensor.get("name") if isinstance(tensor, dict) else str(tensor)
        for name in ITEM_INPUT_FILES.get(input_name, ()):
            needs.setdefault(name, f"item input {input_name!r}")
    return needs


def check_manifest(path: Path, m: Any) -> None:
    """Raise BundleError unless `m` is a manifest this version can serve."""
    where = path / MANIFEST_FILE
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        found = m.get("format") if isinstance(m, dict) else None
        again = (" (an older bundle: export its checkpoint again, `recserve export --checkpoint <run>/best.pt`)"
                 if isinstance(found, str) and found.startswith("recserve-bundle/") else "")
        raise BundleError(where, f"'format' must be {FORMAT!r}, found {found!r}{again}")
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
        weights = m["graphs"][graph].get("weights", {})
        if not isinstance(weights, dict) or any(not isinstance(f, str) or not f.endswith(".npy") or f not in m["files"]
                                                for f in weights.values()):
            raise BundleError(where, f"graph {graph!r}: 'weights' must map initializer names to .npy files listed "
                                     "under 'files'")
    for name, needed_by in required_files(m).items():
        if name not in m["files"]:
            raise BundleError(where, f"{name} is not listed under 'files' ({needed_by} needs it: {HOLDS[name]})")
    index = m.get("index")
    if index is not None and (not isinstance(index, dict) or index.get("file") not in m["files"]):
        raise BundleError(where, "'index' must name a file listed under 'files'")
    # Optional (bundles before it serve without one), but the kind and the file come together.
    if "fallback" in m and m["fallback"] not in FALLBACK_KINDS:
        raise BundleError(where, f"unknown fallback {m['fallback']!r} (expected one of {sorted(FALLBACK_KINDS)})")
    if ("fallback" in m) != (FALLBACK_FILE in m["files"]):
        raise BundleError(where, f"'fallback' and a listed {FALLBACK_FILE} go together: found only one")
