"""The experiments being served: each arm bound to the ServedModel it answers with.

`Experiments.load` (called by the registry after every bundle load, so /admin/reload and SIGHUP re-read the
file) builds a new dict and swaps it in with one assignment, as the registry does with its models. A file that
does not parse, or an arm whose bundle does not load, refuses the whole file: the previous configuration keeps
serving (bound again to the models now served, so a LATEST arm follows LATEST).

An arm at LATEST answers with the model the registry serves under that name; an arm at a pinned version with
ARTIFACTS/<model>/<version>/, loaded beside it (the same ServedModel when it is the version LATEST names) and
kept while some arm names it."""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

from service.experiments import assign
from service.experiments.config import INTERLEAVED, LATEST, Arm, Experiment, ExperimentsError, read
from service.model import ServedModel

log = logging.getLogger("recserve.experiments")


class Choice(NamedTuple):
    """The arm that answers one request."""

    experiment: str
    arm: str
    label: str  # "<experiment>/<arm>", as the log and the metrics name it
    request_id: str  # the answer's id (assignment's key when the request names no user)
    # an interleaved experiment: every request is answered by both of its arms, as arm INTERLEAVED
    # (service/experiments/interleaved.py)
    interleaved: Served | None = None


@dataclass(frozen=True)
class Served:
    """One experiment as served: its arms (file order), the models they answer with, assignment's bounds."""

    experiment: Experiment
    models: tuple[ServedModel, ...]
    upper: list[float]
    labels: tuple[str, ...]  # "<experiment>/<arm>": the arm as the log and the metrics name it
    shadows: tuple[int, ...] = ()  # the shadow arms (indices): they score sampled answers after the fact

    # arm index -> the arm that answers the users assigned to it: itself, or for a rolled-back canary the
    # control (canary.py), so a rollback moves the canary's users and nobody else's
    answering: tuple[int, ...] | None = None

    def weight(self, i: int) -> float:
        """The share of users arm `i` answers now (0 for a rolled-back canary, whose share the control takes)."""
        upper = [0.0, *self.upper, 1.0]
        answering = self.answering or range(len(self.experiment.arms))
        return sum(upper[j + 1] - upper[j] for j, by in enumerate(answering) if by == i)

    def choose(self, user_id: str | None, request_id: str) -> int:
        """The arm (index) of this user, or of this request when it names no user."""
        key = "u:" + user_id if user_id is not None else "r:" + request_id
        return assign.pick(self.upper, assign.point(self.experiment.salt, key))

    def answer(self, user_id: str | None, request_id: str) -> tuple[ServedModel, Choice]:
        """The model that answers this request, and the choice the answer and the log name. An interleaved
        experiment answers with both arms: the control's model, and the choice naming both."""
        experiment = self.experiment
        if experiment.interleave:
            control = next(i for i, a in enumerate(experiment.arms) if a.control)
            return self.models[control], Choice(experiment.name, INTERLEAVED, f"{experiment.name}/{INTERLEAVED}",
                                                request_id, self)
        i = self.choose(user_id, request_id)
        if self.answering is not None:
            i = self.answering[i]
        return self.models[i], Choice(self.experiment.name, self.experiment.arms[i].name, self.labels[i], request_id)


LoadOne = Callable[[str, Path], ServedModel]


class Experiments:
    def __init__(self, path: Path | None, artifacts: Path):
        self.path, self.artifacts = path, artifacts
        self.served: dict[str, Served] = {}
        self.config: dict[str, Experiment] = {}
        self.pinned: dict[tuple[str, str], ServedModel] = {}
        self.error: str | None = None  # why the last read was refused (the previous configuration serves)
        self.rollbacks: dict[str, set[str]] = {}  # experiment -> canary arms rolled back (canary.py)

    def get(self, name: str) -> Served | None:
        return self.served.get(name)

    def load(self, models: dict[str, ServedModel], load_one: LoadOne) -> str | None:
        """Read the file again and bind its arms to `models` (and pinned versions, loaded with `load_one`);
        returns the refusal's one-line reason, or None. Blocking; the registry calls it under its lock."""
        if self.path is None:
            return None
        try:
            config = read(self.path)
            served, pinned = self._bind(config, models, load_one)
        except ExperimentsError as exc:
            self.error = str(exc)
            log.error("experiments refused, the previous configuration keeps serving: %s", exc)
            try:  # the previous file's arms, bound to the models now served
                served, pinned = self._bind(self.config, models, load_one)
            except ExperimentsError as again:
                log.error("the previous experiments no longer bind either, none served: %s", again)
                served, pinned, self.config = {}, {}, {}
            self.served, self.pinned = served, pinned
            return self.error
        self.config, self.served, self.pinned, self.error = config, served, pinned, None
        if served:
            log.info("experiments: %s", "; ".join(_describe(s) for s in served.values()))
        return None

    def _bind(self, config: dict[str, Experiment], models: dict[str, ServedModel], load_one: LoadOne):
        served, pinned = {}, {}
        for name, experiment in config.items():
            if name in models:
                raise ExperimentsError(f"{self.path}: experiment {name!r}: a model is served under that name; "
                                       "name the experiment differently")
            bound = tuple(self._model(name, arm, models, pinned, load_one) for arm in experiment.arms)
            served[name] = Served(experiment, bound, assign.bounds([a.weight for a in experiment.arms]),
                                  tuple(f"{name}/{a.name}" for a in experiment.arms),
                                  tuple(i for i, a in enumerate(experiment.arms) if a.shadow),
                                  self._answering(experiment))
        return served, pinned

    def _answering(self, experiment: Experiment) -> tuple[int, ...] | None:
        """Who answers each arm's users: the control for a rolled-back canary; None when no arm is."""
        off = self.rollbacks.get(experiment.name, set())
        if not off:
            return None
        control = next(i for i, a in enumerate(experiment.arms) if a.control)
        return tuple(control if a.name in off else i for i, a in enumerate(experiment.arms))

    def set_rollbacks(self, rollbacks: dict[str, set[str]]) -> None:
        """Serve each experiment with the users of the canary arms `rollbacks` names answered by its control
        (assignment itself unchanged: nobody else moves); swapped in one assignment, as `load` swaps the dict."""
        self.rollbacks = rollbacks
        served = dict(self.served)
        for name, one in served.items():
            answering = self._answering(one.experiment)
            if answering != one.answering:
                served[name] = replace(one, answering=answering)
        self.served = served

    def _model(self, experiment: str, arm: Arm, models: dict[str, ServedModel],
               pinned: dict[tuple[str, str], ServedModel], load_one: LoadOne) -> ServedModel:
        at = f"{self.path}: experiment {experiment!r}, arm {arm.name!r}"
        current = models.get(arm.model)
        if arm.version == LATEST or (current is not None and current.version == arm.version):
            if current is None:
                raise ExperimentsError(f"{at}: model {arm.model!r} is not served (served: {sorted(models)})")
            return current
        key = (arm.model, arm.version)
        if key not in pinned:
            found = self.pinned.get(key)
            if found is None:
                path = self.artifacts / arm.model / arm.version
                try:
                    found = load_one(arm.model, path)
                except Exception as exc:  # noqa: BLE001 - any failure refuses the file
                    raise ExperimentsError(f"{at}: bundle {path} does not load: "
                                           f"{' '.join(str(exc).split())}") from None
            pinned[key] = found
        return pinned[key]


def _describe(served: Served) -> str:
    arms = ", ".join(f"{a.name}={m.name}@{m.version} {f'shadow of {a.sample:.0%}' if a.shadow else f'w{a.weight:g}'}"
                     f"{' (control)' if a.control else ''}"
                     for a, m in zip(served.experiment.arms, served.models))
    return f"{served.experiment.name}: {arms}"
