"""Every hyperparameter of a run, settable by name and recorded: `recserve train --set`, `--config`, `--show-config`.

A run's settings are three sections over the dataclasses that already hold them, not a parallel schema:
- `train`: training.loop.TrainConfig (epochs, batch_size, lr, ...);
- `data`: the training.train.DataOptions fields the kind reads (max_seq_length, features, k_core, ...);
- `model`: the fields of the kind's config dataclass that have a default, less the ones the data decides
  (`Recipe.from_data`: vocabulary sizes, and fields a data option sets, like max_seq_length).

A name is `section.field`, or the bare field where only one section has it. Values are checked against the
dataclass annotation (int, float, str, bool, lists, `| None`) and the recipe's limits (models/limits.py);
every refusal is one SettingError line naming the field and what it takes.

Precedence, lowest first: the model's defaults (its recipe's training defaults, its config's defaults) <
`--reference-recipe` (the recipe's `reference`: the reference implementation's settings) < `--config FILE` <
the explicit options of `recserve train` (--epochs, --lr, --max-seq-length, ...) < `--set` (in the order given).
The effective settings land in metrics.json and in the bundle's manifest (`training.settings`), in the form
`--config` reads back.
"""
from __future__ import annotations

import types
import typing
from dataclasses import MISSING, asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import yaml

from models.limits import AT_LEAST_1, NON_EMPTY, NON_NEGATIVE, OneOf, Range, SettingError
from models.recipe import Recipe
from models.registry import KINDS, recipe as recipe_of
from training.loop import TrainConfig
from training.train import DataOptions

SECTIONS = ("train", "data", "model")
# The metrics each data family's evaluation reports: what `train.monitor` may name.
METRICS = {"interactions": ("ndcg@10", "recall@10", "mrr@10", "hit@10"),
           "news": ("group_auc", "mrr", "ndcg@5", "ndcg@10")}
# lr 0 stays allowed: a run that only validates its starting point (the DDP tests use one).
TRAIN_LIMITS = {"epochs": AT_LEAST_1, "batch_size": AT_LEAST_1, "lr": NON_NEGATIVE, "weight_decay": NON_NEGATIVE,
                "patience": AT_LEAST_1, "seed": NON_NEGATIVE, "max_steps_per_epoch": AT_LEAST_1,
                "device": OneOf(("auto", "cpu", "cuda")), "lr_schedule": OneOf(("constant", "cosine")),
                "max_minutes": Range(0, low_open=True)}
DATA_LIMITS = {"k_core": NON_NEGATIVE, "max_seq_length": AT_LEAST_1, "features": NON_EMPTY}
FAMILY_DATA = {"interactions": ("min_rating", "k_core"), "news": ()}
# TrainConfig fields that say where and how a run shows, not what it learns: left out of a tuned config file.
RUN_ONLY = ("progress", "device")


@dataclass
class Settings:
    """One kind's effective settings, section by section, as plain values."""
    kind: str
    train: dict
    data: dict
    model: dict

    def as_dict(self) -> dict:
        return {"kind": self.kind, "train": dict(self.train), "data": dict(self.data), "model": dict(self.model)}

    def to_yaml(self, *, run_only: bool = True) -> str:
        """The settings as the YAML `--config` reads (without `device` and `progress` when not run_only)."""
        values = self.as_dict()
        if not run_only:
            values["train"] = {k: v for k, v in values["train"].items() if k not in RUN_ONLY}
        return yaml.safe_dump(values, sort_keys=False)

    def model_changes(self) -> dict:
        """The model settings that differ from the config's defaults: what training applies over the config
        built from the data (a default leaves a field the data decides, like word_emb_dim, to the data)."""
        base = model_fields(recipe_of(self.kind))
        return {k: v for k, v in self.model.items() if v != base[k]}

    def train_config(self) -> TrainConfig:
        return TrainConfig(**self.train)

    def data_options(self, **others) -> DataOptions:
        """DataOptions with this kind's data settings (and `others`: paths that are no setting)."""
        return DataOptions(**self.data, **others)


def data_fields(r: Recipe) -> tuple[str, ...]:
    return FAMILY_DATA[r.family] + tuple(r.data_options)


def model_fields(r: Recipe) -> dict[str, Any]:
    """The kind's settable model-config fields and their defaults."""
    out = {}
    for f in fields(r.config):
        if f.name in r.from_data:
            continue
        if f.default is not MISSING:
            out[f.name] = f.default
        elif f.default_factory is not MISSING:
            out[f.name] = f.default_factory()
    return out


def defaults(kind: str) -> Settings:
    """The kind's settings before anything is set: recipe training defaults, DataOptions and config defaults."""
    r = recipe_of(kind)
    data = asdict(DataOptions())
    # device: `recserve train`'s default, auto (TrainConfig's own, cpu, is the Python API's)
    train = asdict(TrainConfig(**{"device": "auto", **r.defaults}))
    return Settings(kind, train, {k: data[k] for k in data_fields(r)}, model_fields(r))


def _types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def section_types(r: Recipe) -> dict[str, dict[str, Any]]:
    data = _types(DataOptions)
    model = _types(r.config)
    return {"train": _types(TrainConfig), "data": {k: data[k] for k in data_fields(r)},
            "model": {k: model[k] for k in model_fields(r)}}


def known_names(kind: str) -> list[str]:
    return [f"{s}.{n}" for s, names in section_types(recipe_of(kind)).items() for n in names]


def resolve_name(kind: str, name: str) -> tuple[str, str]:
    """(section, field) of `section.field` or of a bare field only one section has."""
    types_ = section_types(recipe_of(kind))
    section, dot, field_name = name.partition(".")
    if dot:
        if section in types_ and field_name in types_[section]:
            return section, field_name
    else:
        found = [s for s in SECTIONS if name in types_[s]]
        if len(found) == 1:
            return found[0], name
        if len(found) > 1:
            raise SettingError(f"{name}: several sections have it; say which: {', '.join(f'{s}.{name}' for s in found)}")
    raise SettingError(f"unknown setting {name!r} for {kind}; known: {', '.join(known_names(kind))}")


def _type_name(t) -> str:
    if t is type(None):
        return "null"
    args = typing.get_args(t)
    if typing.get_origin(t) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args)
    if typing.get_origin(t) is list:
        plural = {int: "integers", float: "numbers", str: "strings"}
        return f"a list of {plural.get(args[0], _type_name(args[0]))}" if args else "a list"
    if typing.get_origin(t) is dict:
        return "a mapping"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false", Path: "a path"}.get(t, str(t))


def coerce(value: Any, t) -> Any:
    """`value` as type `t`, or TypeError. Strings that spell a number are taken for floats (YAML reads 1e-3
    as a string); a comma-separated string is a list."""
    origin, args = typing.get_origin(t), typing.get_args(t)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return coerce(value, a)
            except TypeError:
                pass
        raise TypeError
    if origin is list:
        if isinstance(value, str):  # "genre,class" or "4,4,2": each part read as YAML
            value = [yaml.safe_load(v) for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise TypeError
        return [coerce(v, args[0]) for v in value] if args else list(value)
    if origin is dict or t is dict:
        if not isinstance(value, dict):
            raise TypeError
        return dict(value)
    if t is bool:
        if isinstance(value, bool):
            return value
        raise TypeError
    if t is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise TypeError
    if t is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise TypeError from None
        raise TypeError
    if t is str or t is Path:
        if isinstance(value, str):
            return value
        raise TypeError
    raise TypeError


def checked(kind: str, section: str, name: str, value: Any) -> Any:
    """`value` for `section.name`, converted to its type and within its limits; SettingError otherwise."""
    r = recipe_of(kind)
    t = section_types(r)[section][name]
    try:
        value = coerce(value, t)
    except TypeError:
        raise SettingError(f"{section}.{name}: expected {_type_name(t)}, got {value!r}") from None
    limit = {"train": {**TRAIN_LIMITS, "monitor": OneOf(METRICS[r.family])}, "data": DATA_LIMITS,
             "model": r.limits}[section].get(name)
    problem = limit.problem(value) if limit is not None else None
    if problem:
        raise SettingError(f"{section}.{name}: {problem}")
    return value


def parse_assignment(kind: str, text: str) -> tuple[str, str, Any]:
    """`name=value` of --set: (section, field, value). The value is read as YAML (`null`, `true`, `[a, b]`),
    except for a string field, which takes the text as it is."""
    name, eq, raw = text.partition("=")
    if not eq or not name.strip():
        raise SettingError(f"--set {text!r}: expected name=value, e.g. --set model.hidden_size=128")
    section, field_name = resolve_name(kind, name.strip())
    t = section_types(recipe_of(kind))[section][field_name]
    optional_text = typing.get_origin(t) in (typing.Union, types.UnionType) and \
        set(typing.get_args(t)) <= {str, Path, type(None)}
    if t in (str, Path) or (optional_text and raw not in ("null", "~", "")):
        return section, field_name, raw
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return section, field_name, value


def read_file(path: str | Path) -> dict:
    """A --config file: a YAML mapping of sections (train, data, model) to field values, and optionally the
    `kind` it is for (what --show-config and the tuner write)."""
    path = Path(path)
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SettingError(f"--config {path}: no such file") from None
    except yaml.YAMLError as err:
        raise SettingError(f"--config {path}: not YAML: {' '.join(str(err).split())}") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise SettingError(f"--config {path}: expected a mapping of sections ({', '.join(SECTIONS)}), got {type(values).__name__}")
    if "kind" in values and values["kind"] not in KINDS:
        raise SettingError(f"--config {path}: kind {values['kind']!r} is no model kind; expected one of {', '.join(sorted(KINDS))}")
    for key, section in values.items():
        if key not in (*SECTIONS, "kind"):
            raise SettingError(f"--config {path}: unknown key {key!r}; expected kind, {', '.join(SECTIONS)}")
        if key != "kind" and section is not None and not isinstance(section, dict):
            raise SettingError(f"--config {path}: {key}: expected a mapping of field: value")
    return values


def resolve(kind: str, *, config: dict | None = None, options: dict[str, Any] | None = None,
            assignments: list[str] = (), reference: bool = False) -> Settings:
    """The effective settings: defaults < the recipe's `reference` settings (with `reference`) < `config`
    (read_file's dict) < `options` (explicit command-line options, `section.field` -> value) < `assignments`
    (--set name=value, in order)."""
    out = defaults(kind)
    layers: list[tuple[str, str, Any]] = []
    if reference:
        if not recipe_of(kind).reference:
            raise SettingError(f"--reference-recipe: {kind}'s defaults are its reference recipe already")
        layers += [(*resolve_name(kind, name), value) for name, value in recipe_of(kind).reference.items()]
    config = config or {}
    if config.get("kind") not in (None, kind):
        raise SettingError(f"--config is for {config['kind']}, not {kind}: its settings would not fit")
    for section in SECTIONS:
        for name, value in (config.get(section) or {}).items():
            if name not in section_types(recipe_of(kind))[section]:
                resolve_name(kind, f"{section}.{name}")  # raises, listing the known names
            layers.append((section, name, value))
    for name, value in (options or {}).items():
        layers.append((*name.split("."), value))
    layers += [parse_assignment(kind, a) for a in assignments]
    for section, name, value in layers:
        getattr(out, section)[name] = checked(kind, section, name, value)
    check_model(kind, out.model)
    return out


def check_model(kind: str, values: dict) -> None:
    """The recipe's checks of fields together (heads dividing a width, a CNN that fits its map)."""
    for check in recipe_of(kind).checks:
        problem = check(values)
        if problem:
            raise SettingError(problem)


def apply_model_settings(r: Recipe, config, values: dict):
    """The config build_config made from the data, with the model settings in `values`. A setting of a field
    that the data decided differently (e.g. word_emb_dim by pretrained word vectors) is refused."""
    if not values:
        check_model(r.kind, asdict(config))
        return config
    for name, value in values.items():
        default = model_fields(r).get(name)
        built = getattr(config, name)
        if built != default and value != built:
            raise SettingError(f"model.{name}: this data fixes it at {built!r}; got {value!r}")
    config = replace(config, **values)
    check_model(r.kind, asdict(config))
    return config


def recorded(kind: str, cfg: TrainConfig, opts: DataOptions, model_config) -> Settings:
    """The settings a run used, read from what it ran with (the form --config takes back)."""
    r = recipe_of(kind)
    data = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(opts).items() if k in data_fields(r)}
    model = {k: v for k, v in asdict(model_config).items() if k in model_fields(r)}
    return Settings(kind, asdict(cfg), data, model)
