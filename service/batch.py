"""Offline bulk recommendations from a bundle: users in batches, one user-encoder call and one matrix
product per batch (ConvNCF: its scorer over the catalog in chunks). Torch-free, like the service."""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from bundle.reader import resolve_latest
from service.config import load_settings
from service.errors import ServiceError
from service.events import UserEvents
from service.metrics import Metrics
from service.model import ServedModel, load_model
from service.ranking import User, resolve_user


def load_for_batch(bundle: str | Path) -> ServedModel:
    """A bundle folder, or a model folder holding LATEST."""
    path = Path(bundle)
    if (path / "LATEST").exists():
        path = resolve_latest(path)
    return load_model(path, load_settings(), Metrics(), UserEvents(1), {})


def recommend_users(model: ServedModel, user_ids: Sequence[str], k: int = 10, batch_size: int = 256,
                    exclude_history: bool = True, chunk: int = 2048) -> Iterator[dict]:
    """Yield one record per user: {"user_id", "results": [{"item_id", "score", "rank"}]} or {"user_id", "error"}.
    A user the model cannot score gets the bundle's fallback ranking, flagged as in the API: {"user_id",
    "results", "fallback": kind} (a bundle without a fallback still gives the error record)."""
    cap = load_settings().history_cap_factor * model.max_history
    for start in range(0, len(user_ids), batch_size):
        records: list[dict] = []
        users: list[tuple[dict, User]] = []
        for user_id in user_ids[start : start + batch_size]:
            records.append({"user_id": user_id})
            try:
                user = resolve_user(model, user_id, None, cap)
            except ServiceError as err:
                records[-1]["error"] = err.message
                continue
            if user.cold:
                _fill_fallback(model, records[-1], user, k, exclude_history)
            else:
                users.append((records[-1], user))
        if users:
            _fill(model, users, k, exclude_history, chunk)
        yield from records  # in input order


SCORES_PER_PASS = 1 << 25  # user x item scores held at once (128 MB): a 1M-item catalog scores 32 users a pass


def _fill(model: ServedModel, users: list[tuple[dict, User]], k: int, exclude_history: bool, chunk: int) -> None:
    """Score one batch of resolved users and put each one's top-k into its record."""
    step = max(1, SCORES_PER_PASS // (model.catalog.size + 1))
    for start in range(0, len(users), step):
        _fill_pass(model, users[start:start + step], k, exclude_history, chunk)


def _fill_pass(model: ServedModel, users: list[tuple[dict, User]], k: int, exclude_history: bool,
               chunk: int) -> None:
    resolved = [u for _, u in users]
    vectors = model.encode_users([u.window for u in resolved], [u.user_idx for u in resolved])
    if model.bundle.scorer == "pairwise":
        scores = np.stack([model.raw_scores(v, model.catalog.matrix, chunk) for v in vectors])
    else:
        scores = vectors @ model.catalog.matrix.T
    scores[:, 0] = -np.inf
    if exclude_history:
        rows = np.repeat(np.arange(len(resolved)), [len(u.seen) for u in resolved])
        scores[rows, np.asarray([i for u in resolved for i in u.seen], dtype=np.int64)] = -np.inf
    kk = min(k, scores.shape[1] - 1)
    top = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
    top = np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, 1), axis=1, kind="stable"), 1)
    for (record, _), row, items in zip(users, scores, top):
        items = items[np.isfinite(row[items])]
        values = model.reported_scores(row[items]).tolist()
        record["results"] = [{"item_id": i, "score": s, "rank": r}
                             for r, (i, s) in enumerate(zip(model.catalog.ids_of(items), values), start=1)]


def _fill_fallback(model: ServedModel, record: dict, user: User, k: int, exclude_history: bool) -> None:
    """A cold user's record: the first k of the fallback order (no items added offline, so none fresh)."""
    drop = np.asarray(user.seen if exclude_history else [], dtype=np.int64)
    rows, scores = model.fallback.top(k, drop, model.catalog.size, fresh=0)
    record["results"] = [{"item_id": i, "score": s, "rank": r}
                         for r, (i, s) in enumerate(zip(model.catalog.ids_of(rows), scores.tolist()), start=1)]
    record["fallback"] = model.fallback.kind
