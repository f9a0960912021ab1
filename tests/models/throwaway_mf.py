"""A throwaway fifth model kind for tests/models/test_fifth_kind.py: matrix factorisation with a BPR loss.

It is everything a new kind needs besides one registry line: a model implementing the contract and its
recipe. Nothing in models/, training/ or service/ knows its name.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.base import DotScorer, OnnxPart, RecModel, id_part
from models.layers import Lookup
from models.recipe import Recipe


@dataclass
class MFConfig:
    n_users: int
    n_items: int
    embedding_size: int = 16


class MF(RecModel):
    kind = "mf"
    user_input = "user_id"
    scorer_kind = "dot"

    def __init__(self, cfg: MFConfig):
        super().__init__()
        self.cfg = cfg
        self.user_embedding = nn.Embedding(cfg.n_users, cfg.embedding_size)
        self.item_embedding = nn.Embedding(cfg.n_items, cfg.embedding_size, padding_idx=0)
        self.item_encoder = Lookup(self.item_embedding)
        self.user_encoder = Lookup(self.user_embedding)
        self.scorer = DotScorer()

    def compute_loss(self, batch: dict[str, Tensor]) -> Tensor:
        user = self.user_embedding(batch["user"])
        pos, neg = self.item_embedding(batch["pos_item"]), self.item_embedding(batch["neg_item"])
        return F.softplus(-((user * pos).sum(1) - (user * neg).sum(1))).mean()

    def user_vectors(self, batch: dict[str, Tensor]) -> Tensor:
        return self.user_embedding(batch["user"])

    def item_vectors(self) -> Tensor:
        return self.item_embedding.weight

    def onnx_parts(self) -> dict[str, OnnxPart]:
        return {
            "item_encoder": id_part(self.item_encoder, "item_idx", "item_vectors", "items"),
            "user_encoder": id_part(self.user_encoder, "user_idx", "user_vectors", "batch"),
            "scorer": self.scorer_part(self.cfg.embedding_size),
        }


RECIPE = Recipe(
    kind="mf", model=MF, config=MFConfig, family="interactions", summary="matrix factorisation (a test kind)",
    build_config=lambda data, opts: MFConfig(n_users=len(data.users), n_items=len(data.items)),
    defaults={"batch_size": 256, "lr": 1e-2, "epochs": 2, "monitor": "ndcg@10"},
)


def tiny() -> MF:
    """The kind's test fixture: a small random instance (what tests/models/conftest.py keeps per kind)."""
    torch.manual_seed(0)
    return MF(MFConfig(n_users=15, n_items=40)).eval()
