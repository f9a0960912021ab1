"""An interleaved experiment's answers (`interleave: true`): both arms rank the request through the Ranker (the
code path of every answer: user resolution, caches, fallback, retrieval), team draft (team_draft.py) merges the
two rankings into one, and the answer and its impression record credit each item to its arm.

The answer: /rank lists every candidate either arm knows, /recommend k items (each arm recommends k, so the
merge always has k to pick from). `experiment` names the experiment, `arm` is "interleaved", `teams` names
each result's arm; `model` and `version` are the arms' (in the file's order, joined by "+" where they differ).
Each result's `score` is the score its own arm gave it, so scores need not decrease down the list (two models'
scores are not comparable); the order is the answer. `fallback` is set when either arm could not score the
user; `unknown` lists the ids neither arm knows, `unknown_history` those some arm ignored.

The impression record (service/feedback/records.py) names the same model and version, arm
"<experiment>/interleaved", and `teams`; its history window is the control arm's. Arms that are the same loaded
model (an A/A check) rank once.
"""
from __future__ import annotations

import random
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from orjson import Fragment, dumps

from service.experiments.team_draft import seed, team_draft
from service.feedback import records
from service.feedback.attribution import Summary
from service.responses import ranking_json

if TYPE_CHECKING:
    from service.experiments.active import Choice
    from service.ranking import Ranking, Ranker


def rank(ranker: Ranker, choice: Choice, user_id: str | None, history: Sequence[str] | None,
         candidates: Sequence[str]) -> bytes:
    """/rank's answer: the known candidates of both arms, team-draft interleaved; the JSON body."""
    models = choice.interleaved.models
    first = ranker.ranked(models[0], user_id, history, candidates)
    second = first if models[1] is models[0] else ranker.ranked(models[1], user_id, history, candidates)
    return _answer(ranker, choice, "rank", (first, second), None)


async def recommend(ranker: Ranker, choice: Choice, user_id: str | None, history: Sequence[str] | None, k: int,
                    exclude_history: bool, exclude: Sequence[str]) -> bytes:
    """/recommend's answer: k items of the arms' k each, team-draft interleaved; the JSON body."""
    models = choice.interleaved.models
    first = await ranker.recommended(models[0], user_id, history, k, exclude_history, exclude)
    second = first if models[1] is models[0] else \
        await ranker.recommended(models[1], user_id, history, k, exclude_history, exclude)
    return _answer(ranker, choice, "recommend", (first, second), k)


def _answer(ranker: Ranker, choice: Choice, route: str, ranked: tuple[Ranking, Ranking], n: int | None) -> bytes:
    served = choice.interleaved
    models, arms = served.models, [a.name for a in served.experiment.arms]
    for model, r in zip(models, ranked):
        if not np.isfinite(r.scores).all():  # as Ranker._response: JSON has no NaN
            raise RuntimeError(f"model {model.name!r} {model.version} produced non-finite scores")
    ids = [model.catalog.ids_of(r.rows) for model, r in zip(models, ranked)]
    items, teams = team_draft(ids[0], ids[1], n, random.Random(seed(served.experiment.salt, choice.request_id)))
    places = [{item: i for i, item in enumerate(found)} for found in ids]
    at = [places[t][item] for item, t in zip(items, teams)]  # each item's place in its own arm's ranking
    scores = np.array([ranked[t].scores[i] for t, i in zip(teams, at)],
                      dtype=np.result_type(ranked[0].scores, ranked[1].scores))
    heads = [models[t].catalog.heads[int(ranked[t].rows[i])] for t, i in zip(teams, at)]
    name = _joined([m.name for m in models])
    version = _joined([m.version for m in models])
    neither = set(ranked[1].unknown)
    unknown = [u for u in ranked[0].unknown if u in neither]
    ignored = list(dict.fromkeys([*ranked[0].user.unknown_history, *ranked[1].user.unknown_history]))
    fallback = ranked[0].fallback or ranked[1].fallback
    body = ranking_json(name, version, heads, list(range(len(items))), scores, unknown, fallback, choice.request_id,
                        ignored, choice)
    named = [arms[t] for t in teams]
    body = body[:-1] + b',"teams":' + dumps(named) + b"}"
    feedback = ranker.feedback
    if feedback is not None:
        control = next(i for i, a in enumerate(served.experiment.arms) if a.control)
        kinds = _joined([m.bundle.kind for m in models])
        feedback.answered_by(name, version, choice.label, fallback, len(items), Answer(
            feedback, models[control], kinds, name, version, route, choice.request_id, ranked[control], items,
            scores, named, fallback, choice.label, time.time()), ranked[control].user.user_id)
    return body


def _joined(values: list[str]) -> str:
    return values[0] if values[0] == values[1] else "+".join(values)


class Answer(NamedTuple):
    """An interleaved answer as queued for the recorder (service/feedback/recorder.py, `Pending`)."""

    feedback: object  # service.feedback.online.Feedback
    control: object  # the control arm's ServedModel: the history window's catalog
    kind: str
    model: str
    version: str
    route: str
    request_id: str
    ranked: Ranking  # the control arm's ranking (its user, its excluded rows)
    items: list[str]
    scores: np.ndarray
    teams: list[str]
    fallback: str | None
    arm: str
    ts: float

    def shown(self) -> tuple[str, float, Summary]:
        n = self.feedback.positions
        return self.request_id, self.ts, Summary(self.model, self.version, self.arm, self.items[:n], self.teams[:n])

    def record(self) -> dict | None:
        feedback = self.feedback
        if not feedback.logging_on:
            return None
        ids, user = self.control.catalog.ids_json, self.ranked.user
        excluded = Fragment(ids(self.ranked.excluded)) if self.route == "recommend" else []
        return records.impression(
            self.request_id, records.hashed_user(user.user_id, feedback.salt), self.model, self.kind, self.version,
            self.route, self.fallback, Fragment(ids(user.window)), len(user.seen), self.items, self.scores,
            self.arm, ts=self.ts, excluded=excluded, teams=self.teams)
