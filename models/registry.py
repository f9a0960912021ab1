"""Model kinds by name: the class and its typed config."""
from __future__ import annotations

from dataclasses import asdict

from models.base import RecModel
from models.bert4rec import BERT4Rec, BERT4RecConfig
from models.convncf import ConvNCF, ConvNCFConfig
from models.gru4recf import GRU4RecF, GRU4RecFConfig
from models.nrms import NRMS, NRMSConfig

MODELS: dict[str, tuple[type[RecModel], type]] = {
    "convncf": (ConvNCF, ConvNCFConfig),
    "gru4recf": (GRU4RecF, GRU4RecFConfig),
    "bert4rec": (BERT4Rec, BERT4RecConfig),
    "nrms": (NRMS, NRMSConfig),
}


def build_model(kind: str, config: dict) -> RecModel:
    """Rebuild a model from its kind and the dict of its config (as stored in checkpoints)."""
    if kind not in MODELS:
        raise ValueError(f"unknown model kind {kind!r}; expected one of {sorted(MODELS)}")
    model_cls, config_cls = MODELS[kind]
    return model_cls(config_cls(**config))


def config_dict(model: RecModel) -> dict:
    return asdict(model.cfg)
