"""The models being served. A reload builds a new dict and swaps it in with one assignment, so a request in
flight keeps the models it started with; a bundle that fails to load is refused and the old one keeps serving.
A model with no old one (at start-up, or after failing) falls back to its newest older version that loads."""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bundle.contract import BundleError
from bundle.reader import discover, older_versions, read_latest, resolve_latest
from service.cache import Store
from service.config import Settings
from service.events import SharedEvents, UserEvents
from service.experiments.active import Experiments
from service.metrics import Metrics
from service.model import ServedModel, load_model
from service.state import RedisState

log = logging.getLogger("recserve.registry")


@dataclass
class ReloadReport:
    loaded: dict[str, str] = field(default_factory=dict)
    unchanged: dict[str, str] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)
    experiments_refused: str | None = None  # why the experiments file was refused (the previous one serves)


@dataclass(frozen=True)
class Fallback:
    """A model serving an older version than LATEST names, because LATEST's was refused."""

    serving: str  # the version served
    latest: str   # what LATEST names
    reason: str   # why that was refused


class Registry:
    """Model name -> ServedModel, plus the per-model runtime state that outlives a bundle version."""

    def __init__(self, settings: Settings, store: Store, metrics: Metrics, state: RedisState | None = None):
        self.settings, self.store, self.metrics, self.state = settings, store, metrics, state
        self.models: dict[str, ServedModel] = {}
        self.failed: dict[str, str] = {}
        self.fallbacks: dict[str, Fallback] = {}
        self.no_models: str | None = None  # why the last load found no model folder at all
        self._events: dict[str, UserEvents] = {}
        self._added: dict[str, dict[str, dict[str, Any]]] = {}
        self.experiments = Experiments(settings.experiments, settings.artifacts)
        self._lock = threading.Lock()

    def get(self, name: str) -> ServedModel | None:
        return self.models.get(name)

    def load(self) -> ReloadReport:
        """Load the LATEST bundle of every model under the artifacts folder (blocking; one reload at a time).
        A refused bundle leaves the old version serving; a model without one falls back to the newest older
        version that loads (`fallbacks` says which, and why)."""
        with self._lock:
            report, current, models, fallbacks = ReloadReport(), self.models, {}, {}
            found = discover(self.settings.artifacts)
            # Said at start-up and on every reload: else an empty or mistyped folder starts a server that
            # looks alive and never becomes ready, with nothing in the log.
            self.no_models = None if found else why_no_models(self.settings.artifacts)
            if self.no_models:
                log.warning("%s", self.no_models)
            for name, folder in found.items():
                old = current.get(name)
                try:
                    path = resolve_latest(folder, self.settings.artifacts)
                    if old is not None and old.bundle.path == path:
                        models[name], report.unchanged[name] = old, old.version
                        continue
                    models[name] = self._load_one(name, path)
                    report.loaded[name] = models[name].version
                    self.metrics.reloads.labels(name, "loaded").inc()
                except Exception as exc:  # noqa: BLE001 - any failure refuses this bundle, never the process
                    message = _why(folder, exc)
                    log.error("refused bundle of %s: %s", name, message)
                    report.refused[name] = message
                    self.metrics.reloads.labels(name, "refused").inc()
                    served_before = self.fallbacks.get(name)
                    if old is None or served_before is not None:
                        # Nothing serves it, or an older version does: the newest older version that loads.
                        older = self._fall_back(name, folder, message, old.bundle.path.name if old else None)
                        if older is not None:
                            old = older
                    if old is not None:
                        models[name] = old
                        if old is not current.get(name) or served_before is not None:
                            fallbacks[name] = Fallback(old.version, _latest_named(folder), message)
            self.models = models  # the atomic swap
            self.fallbacks = fallbacks
            self.failed = {n: e for n, e in report.refused.items() if n not in models}
            self.metrics.models_loaded.set(len(models))
            # after the models: an arm at LATEST answers with the model just swapped in
            report.experiments_refused = self.experiments.load(models, self._load_beside)
            return report

    def _fall_back(self, name: str, folder: Path, refused: str, serving: str | None) -> ServedModel | None:
        """The newest version older than LATEST's (and newer than the version `serving`, when one serves) that
        verifies and loads, or None; said loudly, since a restart no longer serves what LATEST names."""
        latest = _latest_named(folder)
        try:
            candidates = older_versions(folder, latest, self.settings.artifacts)
        except Exception as exc:  # noqa: BLE001 - a model folder out of the tree, or unlistable: nothing to try
            log.error("%s: no older version to fall back to: %s", name, _why(folder, exc))
            return None
        for path in candidates:
            if serving is not None and path.name <= serving:
                break
            try:
                model = self._load_one(name, path)
            except Exception as exc:  # noqa: BLE001 - as in load(): refuse this version, try the next
                log.error("refused older bundle of %s too: %s", name, _why(folder, exc))
                continue
            log.error("%s: LATEST names %r, which was refused (%s); serving the older version %s instead until "
                      "LATEST names a bundle that loads", name, latest, refused, model.version)
            return model
        if serving is None:
            log.error("%s: no older version under %s loads either: %s is not served", name, folder, name)
        return None

    def _load_one(self, name: str, path, beside: bool = False) -> ServedModel:
        """Load one version of `name`. `beside`: a version an experiment pins next to the one served, which
        keeps its own record of the added items it applied (service/sync.py brings it those it lacks)."""
        if name not in self._events:
            self._events[name] = (SharedEvents(self.state, name) if self.state is not None
                                  else UserEvents(self.settings.max_event_users))
        events = self._events[name]
        added = self._added.setdefault(name, {})
        if self.state is not None:  # what every replica added, re-encoded by this version's encoder below
            added.update(self.state.added_items(name))
        if beside:
            added = dict(added)
        model = load_model(path, self.settings, self.metrics, events, added)
        if added and model.tokenizer is not None:
            replay = [i for i in list(added) if i not in model.catalog]  # a copy: /items may add meanwhile
            if replay:
                from service.items import add_items

                add_items(model, [added[i] | {"item_id": i} for i in replay], self.settings)
        log.info("serving %s %s (%d items, %s)", name, model.version, model.catalog.size,
                 model.graphs["user_encoder"].provider)
        return model


    def _load_beside(self, name: str, path: Path) -> ServedModel:
        return self._load_one(name, path, beside=True)


def _why(folder: Path, exc: Exception) -> str:
    return str(exc) if isinstance(exc, BundleError) else f"{folder}: {type(exc).__name__}: {exc}"


def _latest_named(folder: Path) -> str:
    """What LATEST names, as read; "" where it cannot be read (then every version counts as older)."""
    try:
        return read_latest(folder)
    except BundleError:
        return ""


def why_no_models(artifacts: Path) -> str:
    """Why `discover(artifacts)` found nothing: the folder is missing, not a folder, a model folder itself, or
    holds no <model>/LATEST."""
    where = artifacts.absolute()
    expected = "expected <artifacts>/<model>/LATEST naming a bundle version; train one with `recserve train`"
    if not where.exists():
        return f"artifacts folder {where} does not exist (set RECSERVE_ARTIFACTS or `recserve serve --artifacts`; " \
               f"{expected})"
    if not where.is_dir():
        return f"artifacts folder {where} is not a folder ({expected})"
    if (where / "LATEST").is_file():
        return f"{where} is a model folder, not the artifacts folder: serve its parent {where.parent} ({expected})"
    folders = sorted(d.name for d in where.iterdir() if d.is_dir() and not d.name.startswith("."))
    held = f"; its folders {', '.join(folders[:5])}{', ...' if len(folders) > 5 else ''} have none" if folders else ""
    return f"no model folders with a LATEST file under {where} ({expected}{held})"
