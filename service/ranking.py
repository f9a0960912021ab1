"""The request pipeline: history -> user vector (cached) -> scores -> top-k -> the response body. No HTTP here."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from service import retrieval
from service.cache import LocalStore, NearCache, Store, from_bytes, to_bytes
from service.config import Settings
from service.errors import unprocessable
from service.experiments import interleaved
from service.experiments.active import Choice
from service.feedback.online import Feedback
from service.feedback.records import DEFAULT_ARM
from service.metrics import Metrics
from service.model import ServedModel
from service.responses import ranking_json


@dataclass(frozen=True)
class User:
    """Who is being scored: the known history (all of it, for exclusion) and the window the encoder sees.
    `cold`: a user the model cannot score, who gets the bundle's fallback ranking."""

    user_id: str | None
    seen: list[int]
    window: list[int]
    user_idx: int | None = None
    cold: bool = False
    unknown_history: tuple[str, ...] = ()  # the request's history ids the model does not know, once each


def resolve_user(model: ServedModel, user_id: str | None, history: Sequence[str] | None, cap: int) -> User:
    """Who the request scores; raises 422 naming the field when nothing usable is given. `history` wins over
    the stored history of `user_id`; histories longer than `cap` are refused.

    A user the model has nothing to score by comes back `cold` (see `cold_user`): for a model of histories an
    unknown `user_id` without a history, or a history of which no item is known (every kind alike: a news
    model would otherwise score an empty history, 0.5 for everything, and look like an answer); for a model
    of user ids (ConvNCF) any user it was not trained on. The history's unknown ids are reported
    (`unknown_history`), so a client can tell an ignored history from a used one. A request naming nobody
    (neither `user_id` nor a non-empty history) stays a 422: it is a client's mistake, not a new user (an
    anonymous visitor is sent with a session id)."""
    if user_id is None and not history:
        raise unprocessable("user_id", "give a user_id or a non-empty history")
    if history and len(history) > cap:
        raise unprocessable("history", f"{len(history)} items exceed the limit of {cap}")
    known, unknown = model.catalog.lookup(history) if history else (None, [])
    unknown = tuple(dict.fromkeys(unknown))
    if model.bundle.user_input == "user_id":
        user_idx = model.user_index(user_id) if user_id is not None else None
        if user_idx is None:
            what = f"unknown user {user_id!r}" if user_id is not None else "missing"
            return cold_user(model, user_id, known or [], unknown,
                             f"{what}; model {model.name!r} scores only users it was trained on")
        return User(user_id, known or [], [], user_idx, unknown_history=unknown)
    seen = known if history else model.stored_history(user_id)
    if seen is None:
        return cold_user(model, user_id, [], unknown, f"unknown user {user_id!r} and no history given")
    if not seen:
        field = "history" if history else "user_id"
        return cold_user(model, user_id, [], unknown, f"no item of the {field} is known to model {model.name!r}",
                         field)
    return User(user_id, seen, seen[-model.max_history:], unknown_history=unknown)


def cold_user(model: ServedModel, user_id: str | None, seen: list[int], unknown: tuple[str, ...], problem: str,
              field: str = "user_id") -> User:
    """A user the model cannot score: served the bundle's fallback ranking; a bundle without one (made before
    bundles carried it) answers 422 with `problem`, as before."""
    if model.fallback is None:
        raise unprocessable(field, problem)
    return User(user_id, seen, [], cold=True, unknown_history=unknown)


class Ranking(NamedTuple):
    """A ranking before it becomes an answer: catalog `rows`, best first, and their reported `scores`."""

    user: User
    rows: np.ndarray
    scores: np.ndarray
    unknown: list[str]
    fallback: str | None = None  # the fallback ranking's kind when the user was cold
    excluded: np.ndarray | Sequence[int] = ()  # /recommend: the rows it left out


class Ranker:
    """Rank candidates or recommend from the catalog for one model, with user vectors cached per history."""

    def __init__(self, store: Store, settings: Settings, metrics: Metrics, feedback: Feedback | None = None):
        self.settings, self.metrics, self.feedback = settings, metrics, feedback
        self.store: Store = store
        if settings.user_near_cache_size and not isinstance(store, LocalStore):
            self.store = NearCache(LocalStore(settings.user_near_cache_size), store, settings.user_ttl_s)
        # Pairwise scores per user key: (float32 scores, bool scored) over the catalog rows; see `scores`.
        size = settings.pairwise_score_cache_size
        self.pair_scores = LocalStore(size) if size else None

    def user(self, model: ServedModel, user_id: str | None, history: Sequence[str] | None) -> User:
        """Resolve the request's user (see `resolve_user`), histories capped by the settings."""
        return resolve_user(model, user_id, history, self.settings.history_cap_factor * model.max_history)

    @staticmethod
    def user_key(model: ServedModel, user_id: str | None, window: Sequence[int]) -> str:
        """The cache key of a user vector; see `Keys.user`. The window enters as the bundle's row numbers
        (fixed for a version, which the key names) and, for items added while serving (whose rows differ
        from worker to worker), as their ids: an int and a string never encode alike."""
        catalog = model.catalog
        generation = catalog.generation if model.bundle.user_input == "news_vectors" else 0
        n = catalog.n_base
        return model.keys.user(user_id, [r if r <= n else catalog.id_of(r) for r in window], generation)

    def user_vector(self, model: ServedModel, user: User, key: str) -> np.ndarray:
        """The user's vector from the cache, else encoded and cached for `user_ttl_s`."""
        vector = from_bytes(self.store.get_many([key])[0], model.bundle.dim)
        self.metrics.cache_lookup("user", vector is not None, vector is None)
        if vector is None:
            vector = model.encode_user(user.window, user.user_idx)
            self.store.set_many([(key, to_bytes(vector))], self.settings.user_ttl_s)
        return vector

    def scores(self, model: ServedModel, key: str, vector: np.ndarray, indices: np.ndarray | None) -> np.ndarray:
        """Raw scores (a new array) of catalog rows `indices`, or of every row (padding row 0 included) for None,
        for the user under `key`.

        A pairwise scorer (ConvNCF's CNN) costs ~0.4M multiply-adds per item, about 40x a dot product, so its
        scores are kept per user key in process and a repeat request scores only the items it has not seen.
        A score depends on nothing but the key (bundle version and user) and the item, and these models'
        catalogs never change while serving (no tokenizer, so no /items), so a kept score is never stale.
        """
        chunk = self.settings.pairwise_chunk
        if model.bundle.scorer != "pairwise" or self.pair_scores is None or model.tokenizer is not None:
            items = model.catalog.matrix if indices is None else model.catalog.vectors(indices)
            return model.raw_scores(vector, items, chunk)
        rows = model.catalog.size + 1
        indices = np.arange(rows) if indices is None else indices
        entry = self.pair_scores.get_many([key])[0]
        if entry is None or entry[0].shape[0] != rows:
            entry = (np.zeros(rows, dtype=np.float32), np.zeros(rows, dtype=bool))  # scores, which are set
            self.pair_scores.set_many([(key, entry)], self.settings.user_ttl_s)
        known, scored = entry
        todo = np.unique(indices[~scored[indices]])
        self.metrics.cache_lookup("score", indices.size - todo.size, todo.size)
        if todo.size:  # on the event loop's thread; if it ran in threads, a race would only score twice
            known[todo] = model.raw_scores(vector, model.catalog.vectors(todo), chunk)
            scored[todo] = True
        return known[indices]

    def forget_user(self, model: ServedModel, user_id: str) -> None:
        """Drop the cached vector of the user's current stored history (called before it changes)."""
        history = model.stored_history(user_id)
        if history is not None and model.keeps_history:
            self.store.delete([self.user_key(model, user_id, history[-model.max_history:])])

    def rank(self, model: ServedModel, user_id: str | None, history: Sequence[str] | None,
             candidates: Sequence[str], request_id: str = "", arm: Choice | None = None) -> bytes:
        """Score the known candidates, best first; unknown ones are listed, not scored. Returns the JSON body.
        A cold user gets the candidates in fallback order, flagged (service/fallback.py). An interleaved
        experiment's arms both rank them, merged by team draft (service/experiments/interleaved.py)."""
        if arm is not None and arm.interleaved is not None:
            return interleaved.rank(self, arm, user_id, history, candidates)
        return self._response(model, "rank", request_id, arm, *self.ranked(model, user_id, history, candidates))

    def ranked(self, model: ServedModel, user_id: str | None, history: Sequence[str] | None,
               candidates: Sequence[str]) -> Ranking:
        """/rank's ranking by one model, before it becomes an answer."""
        user = self.user(model, user_id, history)
        indices, unknown = model.catalog.lookup(dict.fromkeys(candidates))
        rows = np.asarray(indices, dtype=np.int64)
        if user.cold:
            rows, scores = model.fallback.rank(rows, model.catalog.size, self.settings.fallback_fresh_items)
            return Ranking(user, rows, scores, unknown, model.fallback.kind)
        key = self.user_key(model, user.user_id, user.window)
        raw = self.scores(model, key, self.user_vector(model, user, key), rows)
        order = np.argsort(-raw, kind="stable")
        return Ranking(user, rows[order], model.reported_scores(raw[order]), unknown)

    async def recommend(self, model: ServedModel, user_id: str | None, history: Sequence[str] | None, k: int,
                        exclude_history: bool, exclude: Sequence[str], request_id: str = "",
                        arm: Choice | None = None) -> bytes:
        """The k best items of the whole catalog, minus the history (optionally) and `exclude`, as a JSON body.
        A cold user gets the first k of the fallback order, flagged (service/fallback.py). An interleaved
        experiment's arms both recommend k, merged by team draft into k (service/experiments/interleaved.py)."""
        if arm is not None and arm.interleaved is not None:
            return await interleaved.recommend(self, arm, user_id, history, k, exclude_history, exclude)
        return self._response(model, "recommend", request_id, arm,
                              *await self.recommended(model, user_id, history, k, exclude_history, exclude))

    async def recommended(self, model: ServedModel, user_id: str | None, history: Sequence[str] | None, k: int,
                          exclude_history: bool, exclude: Sequence[str]) -> Ranking:
        """`recommend`'s ranking before it becomes an answer (a shadow arm's scoring stops here: shadow.py)."""
        user = self.user(model, user_id, history)
        excluded, unknown = model.catalog.lookup(exclude)
        if user.cold:
            drop = np.asarray([*excluded, *(user.seen if exclude_history else ())], dtype=np.int64)
            rows, scores = model.fallback.top(k, drop, model.catalog.size, self.settings.fallback_fresh_items)
            return Ranking(user, rows, scores, unknown, model.fallback.kind, drop)
        key = self.user_key(model, user.user_id, user.window)
        vector = self.user_vector(model, user, key)
        drop = np.asarray([*excluded, *(user.seen if exclude_history else ())], dtype=np.int64)
        pairwise = (lambda rows: self.scores(model, key, vector, rows)) if model.bundle.scorer == "pairwise" else None
        if model.index is not None and model.catalog.n_base >= self.settings.retrieval_min_items:
            rerank = self.settings.rerank_candidates
            # awaited: the searches of requests that arrived together run as one call (service/index_searches.py)
            found = await model.searches.search(vector, retrieval.first_count(model, k, drop, pairwise is not None,
                                                                              rerank))
            rows, raw = retrieval.indexed(model, vector, k, drop, pairwise, rerank, found)
        else:
            rows, raw = retrieval.exact(model, vector, k, drop, pairwise)
        return Ranking(user, rows, model.reported_scores(raw), unknown, None, drop)

    def _response(self, model: ServedModel, route: str, request_id: str, arm: Choice | None, user: User,
                  rows: np.ndarray, scores: np.ndarray, unknown: list[str], fallback: str | None = None,
                  excluded: np.ndarray | Sequence[int] = ()) -> bytes:
        """The answer's JSON body; the answer is recorded (service/feedback) when the ranker records, under
        its experiment arm ("<experiment>/<arm>") when an experiment answered. `rows` stays an array for the
        record: a list of them would be a hundred int objects kept until written."""
        if not np.isfinite(scores).all():  # a broken bundle; JSON has no NaN, and null would break clients
            raise RuntimeError(f"model {model.name!r} {model.version} produced non-finite scores")
        body = ranking_json(model.name, model.version, model.catalog.heads, rows.tolist(), scores, unknown, fallback,
                            request_id, user.unknown_history, arm)
        if self.feedback is not None:
            self.feedback.answered(model, route, request_id, user.user_id, user.window, len(user.seen),
                                   rows, scores, fallback, excluded, DEFAULT_ARM if arm is None else arm.label)
        return body
