"""A served model: a verified bundle, its three onnxruntime sessions, its catalog (the bundle's item vectors,
memory-mapped, plus items added while serving), and the functions that run the three graphs (items ->
vectors, users -> vectors, vectors -> scores)."""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bundle.ann import exact_scan_cost, missed_target
from bundle.contract import GRAPHS, BundleError
from bundle.reader import Bundle, load_bundle
from bundle.user_feeds import user_feeds
from service.cache import Keys
from service.catalog import Catalog
from service.config import Settings
from service.events import UserEvents
from service.fallback import Fallback
from service.index_searches import IndexSearches
from service.metrics import Metrics
from service.runtime import Graph, choose_providers

log = logging.getLogger("recserve.model")
HISTORIES_KEPT = 100_000  # users whose bundle history a model keeps as a list (see ServedModel.bundle_history)


@dataclass
class ServedModel:
    """Everything a request needs about one model. `events` and `added` are shared across bundle versions."""

    bundle: Bundle
    graphs: dict[str, Graph]
    catalog: Catalog
    keys: Keys
    max_history: int
    events: UserEvents
    added: dict[str, dict[str, Any]]
    tokenizer: Any = None
    fallback: Fallback | None = None  # for users the model cannot score; None: they get a 422
    index: Any = None  # the bundle's nearest-neighbour index of its item vectors (bundle/ann.py), if it has one
    searches: Any = None  # the index's searches for concurrent requests, batched (service/index_searches.py)
    _histories_kept: dict[str, list[int]] = field(default_factory=dict)  # see bundle_history

    @property
    def name(self) -> str:
        return self.bundle.model

    @property
    def version(self) -> str:
        return self.bundle.version

    @property
    def keeps_history(self) -> bool:
        return self.bundle.user_input != "user_id"

    def retrieval(self, min_items: int) -> dict:
        """How /recommend finds the top k (GET /models): through the index or by an exact scan, and why, with
        the recall the index measured at export. An index that missed its target is never searched."""
        info = self.bundle.manifest.get("index") or {}
        measured = {key: info[key] for key in ("recall_at_10", "recall_target") if key in info}
        if not info:
            return {"way": "exact", "reason": "the bundle has no item index", **measured}
        if missed_target(info):
            return {"way": "exact", **measured, "reason": "its index missed the recall target at export: "
                    + exact_scan_cost(self.catalog.n_base, self.bundle.dim)}
        if self.catalog.n_base < min_items:
            return {"way": "exact", **measured,
                    "reason": f"{self.catalog.n_base:,} items, fewer than RECSERVE_RETRIEVAL_MIN_ITEMS ({min_items:,})"}
        return {"way": "index", **measured, "reason": f"at least RECSERVE_RETRIEVAL_MIN_ITEMS ({min_items:,}) items"}

    def user_index(self, user_id: str) -> int | None:
        """A user_id model's index (1..U) of a user it was trained on, else None."""
        users = self.bundle.users
        position = users.get(user_id) if users is not None else None
        return None if position is None else position + 1

    def stored_history(self, user_id: str) -> list[int] | None:
        """Catalog rows of the bundle's history of the user plus the known items of the clicks appended at
        runtime, oldest first; None for a user with neither."""
        stored, extra = self.bundle_history(user_id), self.events.get(user_id)
        if stored is None and extra is None:
            return None
        return [*(stored or ()), *(self.catalog.lookup(extra)[0] if extra else ())]

    def bundle_history(self, user_id: str) -> list[int] | None:
        """The bundle's history of the user (catalog rows), None for a user it has none of. Kept for users
        looked up lately (a bundle never changes; a binary search over a million users costs ~10x a dict
        probe); users without one are never kept, so a client cannot fill the dict with made-up ids."""
        kept = self._histories_kept.get(user_id)
        if kept is None and self.bundle.histories is not None:
            found = self.bundle.histories.get(user_id)
            if found is not None:
                if len(self._histories_kept) >= HISTORIES_KEPT:
                    self._histories_kept = {}
                kept = self._histories_kept[user_id] = found.tolist()
        return kept

    def encode_items(self, inputs: dict[str, np.ndarray], batch: int) -> np.ndarray:
        """Item vectors [N, D] for rows of item-encoder inputs, `batch` rows per call."""
        n = next(iter(inputs.values())).shape[0]
        out = np.empty((n, self.bundle.dim), dtype=np.float32)
        for start in range(0, n, batch):
            out[start:start + batch] = self.graphs["item_encoder"].run(
                {k: v[start:start + batch] for k, v in inputs.items()})
        return out

    def encode_user(self, window: Sequence[int], user_idx: int | None) -> np.ndarray:
        """One user vector [D] from the user encoder."""
        return self.encode_users([window], [user_idx])[0]

    def encode_users(self, windows: Sequence[Sequence[int]], user_idx: Sequence[int | None]) -> np.ndarray:
        """User vectors [B, D] in one user-encoder call: catalog rows of each user's history window (oldest
        first), or the users' indices for a model of user ids. Inputs are padded to max_history as in training."""
        feeds = user_feeds(self.bundle.user_input, self.bundle.max_history, windows, user_idx, self.catalog.vectors)
        return self.graphs["user_encoder"].run(feeds)

    def raw_scores(self, user: np.ndarray, items: np.ndarray, chunk: int) -> np.ndarray:
        """Scores [K] of item vectors [K, D] for one user vector [D]; before the sigmoid for "dot_sigmoid"
        (ranking uses these). A pairwise scorer runs over `chunk` items per call."""
        if self.bundle.scorer != "pairwise":
            return items @ user
        scorer, parts = self.graphs["scorer"], []
        for start in range(0, items.shape[0], chunk):
            parts.append(scorer.run({"user": user[None], "items": items[None, start:start + chunk]})[0])
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)

    def reported_scores(self, raw: np.ndarray) -> np.ndarray:
        """What the API reports for raw scores: the probability for "dot_sigmoid", else the raw score."""
        if self.bundle.scorer != "dot_sigmoid":
            return raw
        with np.errstate(over="ignore"):
            return 1.0 / (1.0 + np.exp(-raw.astype(np.float64)))


def _check_graph(bundle: Bundle, name: str, graph: Graph) -> None:
    expected = set(bundle.graph_io(name, "inputs"))
    if expected != set(graph.inputs):
        raise BundleError(bundle.path / bundle.manifest["graphs"][name]["file"],
                          f"graph inputs {sorted(graph.inputs)} differ from the manifest's {sorted(expected)}")


def _warm_up(model: ServedModel) -> None:
    """Run the user encoder and scorer once so the first request does not pay for lazy initialisation."""
    user = model.encode_user([1] if model.catalog.size else [], 1 if model.bundle.users else 0)
    model.raw_scores(user, model.catalog.vectors(np.arange(min(2, model.catalog.size + 1))), chunk=2)


def load_model(path: Path, settings: Settings, metrics: Metrics, events: UserEvents,
               added: dict[str, dict[str, Any]]) -> ServedModel:
    """Verify and load the bundle in `path`, map its catalog, warm it up; raises BundleError on a bad bundle."""
    bundle = load_bundle(path)
    providers = choose_providers(settings.providers)
    observe = metrics.inference_observer(bundle.model)
    # The item encoder runs only for items added from text (/items): the catalog's vectors come with the
    # bundle. An id model's item encoder holds its whole embedding table, which would cost every worker a
    # private copy for nothing (a million 64-d items: 256 MB).
    wanted = [g for g in GRAPHS if g != "item_encoder" or bundle.tokenizer_path is not None]
    try:
        graphs = {g: Graph(g, bundle.graphs[g], providers, settings.intra_op_threads, settings.inter_op_threads,
                           observe, bundle.graph_weights.get(g), bundle.path) for g in wanted}
    except Exception as exc:  # onnxruntime raises its own types for invalid graphs
        raise BundleError(path, f"onnxruntime cannot load a graph: {exc}") from exc
    for name, graph in graphs.items():
        _check_graph(bundle, name, graph)
    bundle.graphs = {}  # onnxruntime holds its own copies: let the bytes go
    limit = min(settings.max_history or bundle.max_history, bundle.max_history)
    model = ServedModel(bundle, graphs, Catalog(bundle.items, bundle.item_vectors),
                        Keys(settings.cache_prefix, bundle.model, bundle.version), limit, events, added,
                        fallback=Fallback.of(bundle))
    if bundle.tokenizer_path is not None:
        from bundle.tokenizers import tokenizer_from_spec

        try:  # the verified bytes, not a second read of the file (which could have changed meanwhile)
            model.tokenizer = tokenizer_from_spec(bundle.tokenizer_spec, bundle.tokenizer_path)
        except ValueError as exc:
            raise BundleError(bundle.tokenizer_path, f"unreadable tokenizer ({exc})") from exc
    info = bundle.manifest.get("index") or {}
    if info and missed_target(info):
        log.warning("%s: its item index found %.2f of its users' top 10 at export (target %.2f): /recommend serves "
                    "%s instead", path, info["recall_at_10"], info.get("recall_target", 0), exact_scan_cost(
                        model.catalog.n_base, bundle.dim))
        if bundle.index_file is not None:
            bundle.index_file.close()
    elif info:
        from bundle.ann import load_index

        try:
            model.index = load_index(path / info["file"], info, settings.index_expansion or None, bundle.index_file)
            model.searches = IndexSearches(model.index, settings.index_search_threads)
        except (ValueError, KeyError) as exc:
            raise BundleError(path / str(info.get("file")), f"unusable item index ({exc})") from exc
        finally:
            if bundle.index_file is not None:
                bundle.index_file.close()  # mapped (or refused): the descriptor has done its job
    try:
        _warm_up(model)
    except Exception as exc:  # onnxruntime checks a graph's tensors against one another only when it runs
        raise BundleError(path, f"the graphs fail on a first input: {exc}") from exc
    return model
