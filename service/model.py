"""A served model: a verified bundle, its three onnxruntime sessions and its ready catalog of item vectors."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from service.bundle import GRAPHS, Bundle, BundleError, load_bundle
from service.cache import Keys, from_bytes, to_bytes
from service.catalog import Catalog
from service.config import Settings
from service.metrics import Metrics
from service.runtime import Graph, choose_providers

log = logging.getLogger("recserve.model")


@dataclass
class ServedModel:
    """Everything a request needs about one model. `events` and `added` are shared across bundle versions."""

    bundle: Bundle
    graphs: dict[str, Graph]
    catalog: Catalog
    keys: Keys
    max_history: int
    events: dict[str, list[str]]
    added: dict[str, dict[str, Any]]
    tokenizer: Any = None
    users: dict[str, int] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.bundle.model

    @property
    def version(self) -> str:
        return self.bundle.version

    @property
    def keeps_history(self) -> bool:
        return self.bundle.user_input != "user_id"

    def stored_history(self, user_id: str) -> list[str] | None:
        """The bundle's history of the user plus clicks appended at runtime; None for an unknown user."""
        stored, extra = self.bundle.histories.get(user_id), self.events.get(user_id)
        if stored is None and extra is None:
            return None
        return [*(stored or ()), *(extra or ())]

    def encode_items(self, inputs: dict[str, np.ndarray], batch: int) -> np.ndarray:
        """Item vectors [N, D] for rows of item-encoder inputs, `batch` rows per call."""
        n = next(iter(inputs.values())).shape[0]
        out = np.empty((n, self.bundle.dim), dtype=np.float32)
        for start in range(0, n, batch):
            out[start:start + batch] = self.graphs["item_encoder"].run(
                {k: v[start:start + batch] for k, v in inputs.items()})
        return out


def _check_graph(bundle: Bundle, name: str, graph: Graph) -> None:
    expected = set(bundle.graph_io(name, "inputs"))
    if expected != set(graph.inputs):
        raise BundleError(bundle.path / bundle.manifest["graphs"][name]["file"],
                          f"graph inputs {sorted(graph.inputs)} differ from the manifest's {sorted(expected)}")


def _catalog(model: ServedModel, store, settings: Settings, metrics: Metrics) -> Catalog:
    """Item vectors from the cache where present for this version, the rest encoded and written back."""
    bundle, dim = model.bundle, model.bundle.dim
    keys = [model.keys.item(i) for i in bundle.items]
    vectors = np.zeros((len(keys), dim), dtype=np.float32)
    missing = []
    for row, raw in enumerate(store.get_many(keys)):
        vector = from_bytes(raw, dim)
        if vector is None:
            missing.append(row)
        else:
            vectors[row] = vector
    metrics.cache_lookup("item", len(keys) - len(missing), len(missing))
    if missing:
        rows = np.asarray(missing)
        vectors[rows] = model.encode_items({k: v[rows] for k, v in bundle.item_inputs.items()}, settings.encode_batch)
        store.set_many([(keys[r], to_bytes(vectors[r])) for r in missing], settings.item_ttl_s or None)
    log.info("%s %s: %d item vectors from cache, %d encoded", bundle.model, bundle.version,
             len(keys) - len(missing), len(missing))
    return Catalog(bundle.items, vectors)


def _warm_up(model: ServedModel) -> None:
    """Run the user encoder and scorer once so the first request does not pay for lazy initialisation."""
    from service.ranking import encode_user, raw_scores  # the pipeline module imports this one

    user = encode_user(model, [1] if model.catalog.size else [], 1 if model.users else 0)
    raw_scores(model, user, model.catalog.matrix[:2], chunk=2)


def load_model(path: Path, settings: Settings, store, metrics: Metrics,
               events: dict[str, list[str]], added: dict[str, dict[str, Any]]) -> ServedModel:
    """Verify and load the bundle in `path`, build its catalog, warm it up; raises BundleError on a bad bundle."""
    bundle = load_bundle(path)
    providers = choose_providers(settings.providers)
    observe = metrics.inference_observer(bundle.model)
    try:
        graphs = {g: Graph(g, bundle.graphs[g], providers, settings.intra_op_threads, settings.inter_op_threads,
                           observe) for g in GRAPHS}
    except Exception as exc:  # onnxruntime raises its own types for invalid graphs
        raise BundleError(path, f"onnxruntime cannot load a graph: {exc}") from exc
    for name, graph in graphs.items():
        _check_graph(bundle, name, graph)
    limit = min(settings.max_history or bundle.max_history, bundle.max_history)
    model = ServedModel(bundle, graphs, Catalog([], np.zeros((0, bundle.dim), np.float32)),
                        Keys(settings.cache_prefix, bundle.model, bundle.version), limit, events, added,
                        users={u: i for i, u in enumerate(bundle.users, start=1)})
    if bundle.tokenizer_path is not None:
        from service.tokenizer import load_tokenizer

        try:
            model.tokenizer = load_tokenizer(bundle.tokenizer_path)
        except (OSError, ValueError) as exc:
            raise BundleError(bundle.tokenizer_path, f"unreadable tokenizer ({exc})") from exc
    model.catalog = _catalog(model, store, settings, metrics)
    _warm_up(model)
    return model
