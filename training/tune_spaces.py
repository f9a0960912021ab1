"""The search spaces of `recserve tune`: one default per model kind, or a YAML file in the same form.

A space maps a setting's name (as --set takes it: `train.lr`, `model.hidden_size`) to what the tuner may try:
- a list: those values (Optuna's categorical; numbers, strings, booleans);
- a mapping `{low, high}`, optionally `log: true` or `step`: a range, integer or float by the setting's type.

The defaults cover what moves the validation metric most for each kind, around its reference values (the
defaults sit inside each range), and leave out what the data fixes. A file replaces the default space whole.
"""
from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

import yaml

from models.limits import SettingError
from models.registry import recipe
from training.settings import checked, resolve_name, section_types

LR = {"low": 1e-4, "high": 1e-2, "log": True}
DEFAULT_SPACES: dict[str, dict[str, Any]] = {
    "convncf": {
        "train.lr": LR, "train.batch_size": [512, 1024, 2048], "model.dropout_prob": {"low": 0.0, "high": 0.5},
        "train.weight_decay": [0.0, 1e-6, 1e-5],
    },
    "gru4recf": {
        "train.lr": LR, "train.batch_size": [256, 512, 1024, 2048],
        "model.embedding_size": [32, 64, 128], "model.hidden_size": [64, 128, 256],
        "model.num_layers": {"low": 1, "high": 2}, "model.dropout_prob": {"low": 0.0, "high": 0.5},
    },
    "bert4rec": {
        "train.lr": LR, "train.batch_size": [256, 512, 1024, 2048],
        "model.hidden_size": [32, 64, 128], "model.n_layers": {"low": 1, "high": 3}, "model.n_heads": [1, 2, 4],
        "model.inner_size": [128, 256, 512], "model.hidden_dropout_prob": {"low": 0.0, "high": 0.5},
        "model.attn_dropout_prob": {"low": 0.0, "high": 0.5}, "model.mask_ratio": {"low": 0.1, "high": 0.6},
    },
    "nrms": {
        "train.lr": {"low": 1e-4, "high": 2e-3, "log": True}, "train.batch_size": [16, 32, 64],
        "model.head_num": [10, 16, 20], "model.head_dim": [16, 20, 32], "model.dropout": {"low": 0.0, "high": 0.4},
        "model.npratio": [2, 4, 8],
    },
    "plm_nrms": {
        "train.lr": {"low": 2e-5, "high": 1e-3, "log": True}, "train.batch_size": [16, 32, 64],
        "model.head_num": [6, 12], "model.dropout": {"low": 0.0, "high": 0.4}, "model.scale": {"low": 2.0, "high": 8.0},
        "model.npratio": [2, 4, 8],
    },
}


def load_space(kind: str, path: str | Path | None = None) -> dict[str, Any]:
    """The space to search: the file's (checked against the kind's settings) or the kind's default."""
    if path is None:
        return check_space(kind, DEFAULT_SPACES.get(kind, {"train.lr": LR}))
    try:
        space = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SettingError(f"--space {path}: no such file") from None
    except yaml.YAMLError as err:
        raise SettingError(f"--space {path}: not YAML: {' '.join(str(err).split())}") from None
    if not isinstance(space, dict) or not space:
        raise SettingError(f"--space {path}: expected a mapping of setting name to a list of values or {{low, high}}")
    return check_space(kind, space, f"--space {path}: ")


def check_space(kind: str, space: dict, where: str = "") -> dict[str, Any]:
    """Each entry names a setting of the kind and offers values of its type within its limits (the bounds of a
    range are checked as values). Names come back as `section.field`."""
    out = {}
    for name, spec in space.items():
        try:
            section, field_name = resolve_name(kind, str(name))
            if isinstance(spec, list) and spec:
                for value in spec:
                    checked(kind, section, field_name, value)
            elif isinstance(spec, dict) and {"low", "high"} <= set(spec) and set(spec) <= {"low", "high", "log", "step"}:
                if not is_number(section_types(recipe(kind))[section][field_name]):
                    raise SettingError(f"{section}.{field_name}: a range needs a number setting; give a list of values")
                low, high = (checked(kind, section, field_name, spec[k]) for k in ("low", "high"))
                if not low < high:
                    raise SettingError(f"{section}.{field_name}: low must be below high, got {low} and {high}")
            else:
                raise SettingError(f"{name}: expected a non-empty list of values or {{low, high[, log, step]}}, got {spec!r}")
        except SettingError as err:
            raise SettingError(f"{where}{err}") from None
        out[f"{section}.{field_name}"] = spec
    return out


def is_number(t) -> bool:
    return t in (int, float) or any(a in (int, float) for a in typing.get_args(t))


def suggest(trial, kind: str, space: dict[str, Any]) -> dict[str, Any]:
    """The trial's values (`section.field` -> value), drawn by the study's sampler."""
    types = section_types(recipe(kind))
    out = {}
    for name, spec in space.items():
        section, field_name = name.split(".")
        t = types[section][field_name]
        if isinstance(spec, list):
            out[name] = trial.suggest_categorical(name, spec)
        elif int in (t, *typing.get_args(t)):
            out[name] = trial.suggest_int(name, int(spec["low"]), int(spec["high"]), step=int(spec.get("step", 1)),
                                          log=bool(spec.get("log", False)))
        else:
            out[name] = trial.suggest_float(name, float(spec["low"]), float(spec["high"]), step=spec.get("step"),
                                            log=bool(spec.get("log", False)))
    return out
