"""RecBole 1.2.1 ConvNCF weights -> our ConvNCF's state dict (embedding rows moved to our ids by token).

Used by bench/archive/convncf_steps_ours.py (the step-by-step check) and bench/archive/convncf_recbole_seeds.py
(RecBole's trained weights scored by our evaluation).
"""
from __future__ import annotations

import torch

# RecBole's parameter names -> ours (its predictor is Dropout then Linear, hence index 1)
NAMES = {"user_embedding.weight": "user_embedding.weight", "item_embedding.weight": "item_embedding.weight",
         "predict_layers.mlp_layers.1.weight": "scorer.predict.weight",
         "predict_layers.mlp_layers.1.bias": "scorer.predict.bias",
         **{f"cnn_layers.cnn_layers.{i}.{p}": f"scorer.cnn.{i}.{p}" for i in (0, 2, 4, 6) for p in ("weight", "bias")}}


def id_maps(data, user_tokens: list[str], item_tokens: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(user, item) tensors mapping RecBole's ids to ours, through the tokens both sides read."""
    ours_user = {token: i for i, token in enumerate(data.users.ids)}
    ours_item = {token: i for i, token in enumerate(data.items.ids)}
    return (torch.tensor([ours_user[t] for t in user_tokens]), torch.tensor([ours_item[t] for t in item_tokens]))


def as_ours(state: dict, user_map: torch.Tensor, item_map: torch.Tensor) -> dict:
    """RecBole's ConvNCF state dict under our names, embedding rows at our ids."""
    out = {}
    for name, value in state.items():
        if name in ("user_embedding.weight", "item_embedding.weight"):
            rows = user_map if name.startswith("user") else item_map
            value = torch.zeros_like(value).index_copy_(0, rows, value)
        out[NAMES[name]] = value
    return out
