"""Model kinds by name. Each kind's recipe sits next to its model (`RECIPE` in the model's module); this table
only says where, so the CLI can list the kinds without importing torch (`recserve serve` runs without it).
A new kind is one model file with its RECIPE and one line here; the CLI, training, export and the tests
read this table."""
from __future__ import annotations

from dataclasses import asdict
from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from models.base import RecModel
    from models.recipe import Recipe

# kind -> the module whose RECIPE describes it
KINDS: dict[str, str] = {
    "convncf": "models.convncf",
    "gru4recf": "models.gru4recf",
    "bert4rec": "models.bert4rec",
    "nrms": "models.nrms",
    "plm_nrms": "models.plm_nrms",
}


def recipe(kind: str) -> Recipe:
    """The recipe of a registered kind; ValueError naming the known kinds otherwise."""
    if kind not in KINDS:
        raise ValueError(f"unknown model kind {kind!r}; expected one of {sorted(KINDS)}")
    found = import_module(KINDS[kind]).RECIPE
    if found.kind != kind:
        raise ValueError(f"{KINDS[kind]}.RECIPE is for kind {found.kind!r}, registered as {kind!r}")
    return found


def recipes() -> dict[str, Recipe]:
    """Every registered kind's recipe (imports every model module)."""
    return {kind: recipe(kind) for kind in KINDS}


def build_model(kind: str, config: dict) -> RecModel:
    """Rebuild a model from its kind and the dict of its config (as stored in checkpoints)."""
    r = recipe(kind)
    return r.model(r.config(**config))


def config_dict(model: RecModel) -> dict:
    return asdict(model.cfg)
