"""The experiments file (RECSERVE_EXPERIMENTS, YAML or JSON), parsed and validated into plain values.

Every problem is a one-line `ExperimentsError` naming the file and the field, so a reload can refuse the whole
file and keep serving the previous configuration."""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

LATEST = "LATEST"
DEFAULT_SAMPLE = 0.1  # a shadow arm's share of the live answers, unless its `sample` says otherwise
INTERLEAVED = "interleaved"  # the arm an interleaved experiment's answers name ("<experiment>/interleaved")
NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")  # no "/": the log and metrics name an arm "<experiment>/<arm>"
VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")  # a folder name: no "/", no ".."


class ExperimentsError(ValueError):
    """An experiments file that cannot be used; the message names the file and the field."""


@dataclass(frozen=True)
class Arm:
    name: str
    model: str
    version: str  # a bundle version folder, or LATEST
    weight: float
    control: bool
    shadow: bool = False  # scores a sample of the live answers after they are sent; answers none (shadow.py)
    sample: float = 0.0  # a shadow arm: the share of its experiment's live answers it scores
    canary: Guardrails | None = None  # a canary arm: its limits against the control (canary.py)


@dataclass(frozen=True)
class Guardrails:
    """A canary arm's limits, relative to the control arm over the last `window_s` seconds (canary.py)."""

    window_s: float = 60.0
    min_requests: int = 200  # each of canary and control, in the window, before errors or latency are judged
    max_error_share: float = 0.02  # canary's share of failed answers minus control's
    max_p99_ratio: float = 2.0  # canary's p99 latency over control's
    max_ctr_drop: float | None = None  # relative: canary CTR below control's x (1 - this) rolls back; off if null
    min_impressions: int = 2000  # each, in the window, before CTR is judged


@dataclass(frozen=True)
class Experiment:
    name: str
    salt: str
    arms: tuple[Arm, ...]  # in the file's order: assignment's ranges follow it (assign.py)
    interleave: bool = False  # both arms answer every request, team-draft interleaved (team_draft.py)

    @property
    def control(self) -> Arm:
        return next(a for a in self.arms if a.control)


def read(path: Path) -> dict[str, Experiment]:
    """The experiments of `path` by name; ExperimentsError naming the file and field on any problem."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ExperimentsError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # noqa: BLE001 - yaml and json raise their own types
        raise ExperimentsError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: "
                               f"{' '.join(str(exc).split())}") from None
    return parse(data, str(path))


def parse(data, where: str) -> dict[str, Experiment]:
    """`{"experiments": [{"name", "salt", "arms": [{"name", "model", "version", "weight", "control"}]}]}`; a
    shadow arm is `{"name", "model", "version", "shadow": true, "sample"}` (weight 0 or absent). With
    `"interleave": true` (two live arms, weights unused) every request is answered by both arms."""
    if data is None:
        data = {}
    if not isinstance(data, dict) or set(data) - {"experiments"}:
        raise ExperimentsError(f"{where}: expected a mapping with one key, `experiments` (a list)")
    items = data.get("experiments") or []
    if not isinstance(items, list):
        raise ExperimentsError(f"{where}: experiments: expected a list")
    found: dict[str, Experiment] = {}
    for i, item in enumerate(items):
        experiment = _experiment(item, f"{where}: experiments[{i}]")
        if experiment.name in found:
            raise ExperimentsError(f"{where}: experiments[{i}].name: {experiment.name!r} is used twice")
        found[experiment.name] = experiment
    return found


def _experiment(item, at: str) -> Experiment:
    if not isinstance(item, dict):
        raise ExperimentsError(f"{at}: expected a mapping")
    _keys(item, {"name", "salt", "arms", "interleave"}, {"name", "arms"}, at)
    name = _name(item["name"], f"{at}.name")
    at = f"{at} ({name})"
    salt = item.get("salt", name)
    if not isinstance(salt, str) or not salt:
        raise ExperimentsError(f"{at}.salt: expected a non-empty string")
    raw = item["arms"]
    if not isinstance(raw, list) or len(raw) < 2:
        raise ExperimentsError(f"{at}.arms: expected a list of at least two arms")
    arms = tuple(_arm(a, f"{at}.arms[{j}]") for j, a in enumerate(raw))
    names = [a.name for a in arms]
    if len(set(names)) != len(names):
        raise ExperimentsError(f"{at}.arms: arm names repeat ({', '.join(names)})")
    if sum(a.control for a in arms) != 1:
        raise ExperimentsError(f"{at}.arms: exactly one arm must have `control: true`")
    if not sum(a.weight for a in arms) > 0:
        raise ExperimentsError(f"{at}.arms: the weights sum to 0; give some arm a positive weight")
    interleave = item.get("interleave", False)
    if not isinstance(interleave, bool):
        raise ExperimentsError(f"{at}.interleave: expected true or false, got {interleave!r}")
    if interleave and len(arms) != 2:
        raise ExperimentsError(f"{at}.arms: an interleaved experiment has exactly two arms, got {len(arms)}")
    if interleave and any(a.shadow or a.canary for a in arms):
        raise ExperimentsError(f"{at}.arms: both arms of an interleaved experiment answer every request; neither "
                               "can be a shadow or a canary arm")
    if interleave and INTERLEAVED in names:
        raise ExperimentsError(f"{at}.arms: {INTERLEAVED!r} names the interleaved answers; name the arm differently")
    return Experiment(name, salt, arms, interleave)


def _arm(item, at: str) -> Arm:
    if not isinstance(item, dict):
        raise ExperimentsError(f"{at}: expected a mapping")
    shadow = item.get("shadow", False)
    if not isinstance(shadow, bool):
        raise ExperimentsError(f"{at}.shadow: expected true or false, got {shadow!r}")
    if shadow:
        return _shadow_arm(item, at)
    _keys(item, {"name", "model", "version", "weight", "control", "shadow", "canary"}, {"name", "model", "weight"}, at)
    name = _name(item["name"], f"{at}.name")
    model = _name(item["model"], f"{at}.model")
    version = item.get("version", LATEST)
    if not isinstance(version, str) or not VERSION.match(version):
        raise ExperimentsError(f"{at}.version: expected LATEST or a bundle version folder name, got {version!r}")
    weight = item["weight"]
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight < 0:
        raise ExperimentsError(f"{at}.weight: expected a number >= 0, got {weight!r}")
    control = item.get("control", False)
    if not isinstance(control, bool):
        raise ExperimentsError(f"{at}.control: expected true or false, got {control!r}")
    canary = _guardrails(item["canary"], f"{at}.canary") if "canary" in item else None
    if canary is not None and control:
        raise ExperimentsError(f"{at}.canary: the control arm is what a canary is judged against; it cannot be one")
    return Arm(name, model, version, float(weight), control, canary=canary)


def _guardrails(item, at: str) -> Guardrails:
    """`canary: {}` (the defaults) or a mapping of Guardrails' fields, each checked."""
    if item is None:
        item = {}
    if not isinstance(item, dict):
        raise ExperimentsError(f"{at}: expected a mapping of limits (or {{}} for the defaults)")
    fields = Guardrails.__dataclass_fields__
    _keys(item, set(fields), set(), at)
    values = {}
    for key, value in item.items():
        if key == "max_ctr_drop" and value is None:
            values[key] = None
            continue
        whole = key in ("min_requests", "min_impressions")
        if isinstance(value, bool) or not isinstance(value, int if whole else (int, float)) or not math.isfinite(value):
            raise ExperimentsError(f"{at}.{key}: expected {'a whole number' if whole else 'a number'}, got {value!r}")
        low_ok = {"window_s": value > 0, "min_requests": value >= 1, "min_impressions": value >= 1,
                  "max_error_share": 0 <= value <= 1, "max_p99_ratio": value >= 1, "max_ctr_drop": 0 < value < 1}[key]
        if not low_ok:
            allowed = {"window_s": "> 0", "min_requests": ">= 1", "min_impressions": ">= 1",
                       "max_error_share": "in [0, 1]", "max_p99_ratio": ">= 1", "max_ctr_drop": "in (0, 1)"}[key]
            raise ExperimentsError(f"{at}.{key}: expected a value {allowed}, got {value!r}")
        values[key] = value if whole else float(value)
    return Guardrails(**values)


def _shadow_arm(item: dict, at: str) -> Arm:
    """A shadow arm: it never answers, so it takes no share of assignment (weight 0) and is not the control."""
    _keys(item, {"name", "model", "version", "weight", "control", "shadow", "sample"}, {"name", "model"}, at)
    if item.get("weight", 0) != 0 or isinstance(item.get("weight", 0), bool):
        raise ExperimentsError(f"{at}.weight: a shadow arm answers no request: leave weight out or 0, "
                               f"got {item['weight']!r}")
    if item.get("control", False) is not False:
        raise ExperimentsError(f"{at}.control: a shadow arm cannot be the control (it answers no request)")
    sample = item.get("sample", DEFAULT_SAMPLE)
    if isinstance(sample, bool) or not isinstance(sample, (int, float)) or not 0 < sample <= 1:
        raise ExperimentsError(f"{at}.sample: expected a share of requests in (0, 1], got {sample!r}")
    live = _arm({**{k: v for k, v in item.items() if k not in ("shadow", "sample")}, "weight": 0}, at)
    return Arm(live.name, live.model, live.version, 0.0, False, True, float(sample))


def _name(value, at: str) -> str:
    if not isinstance(value, str) or not NAME.match(value):
        raise ExperimentsError(f"{at}: expected 1-64 characters of letters, digits, '_', '.', '-', got {value!r}")
    return value


def _keys(item: dict, allowed: set[str], required: set[str], at: str) -> None:
    unknown = sorted(set(item) - allowed)
    if unknown:
        raise ExperimentsError(f"{at}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})")
    missing = sorted(required - set(item))
    if missing:
        raise ExperimentsError(f"{at}.{missing[0]}: missing")
