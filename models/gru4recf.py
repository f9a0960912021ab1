"""GRU4RecF (Hidasi et al., 2016, with item features), after RecBole 1.2.1's `gru4recf.py`.

Two GRUs run in parallel: one over the item embeddings of the sequence, one over the pooled (summed)
embeddings of each item's selected features (default: every token field of the .item file). Their outputs are concatenated, projected
to the embedding size, and read at the last real position. Scores are dot products with the item
embeddings (the output layer), trained with cross-entropy over all items.

The item-feature table is a buffer of the user encoder, so the exported graph needs only item indices.
Batch fields: training {"item_seq", "seq_len", "target"}; evaluation {"item_seq", "seq_len"}.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.base import DotScorer, OnnxPart, RecModel, id_part, sequence_part
from models.layers import Dropout, Lookup, gather_positions
from models.limits import AT_LEAST_1, PROBABILITY, TRAIN_MODES
from models.recipe import DatasetMismatch, Recipe

log = logging.getLogger("recserve.train")


@dataclass
class GRU4RecFConfig:
    n_items: int                                  # items including padding index 0
    feature_vocab_sizes: dict[str, int]           # selected feature -> number of tokens (incl. padding 0)
    feature_lengths: dict[str, int]               # selected feature -> tokens per item in the table
    embedding_size: int = 64                      # item and feature embedding size
    hidden_size: int = 128                        # GRU hidden size
    num_layers: int = 1                           # GRU layers
    dropout_prob: float = 0.3                     # dropout on the item embeddings
    max_seq_length: int = 50                      # longest history the user encoder reads
    selected_features: list[str] = field(default_factory=lambda: ["class"])  # item features to use
    train_mode: str = "window"                    # "window": the next-item loss at every position of a window, one
                                                  # pass; "prefix": one sample per prefix (RecBole's recipe), the
                                                  # same loss at ~30x the time an epoch (docs/benchmarks.md, 11)


class GRU4RecFUserEncoder(nn.Module):
    """(item_seq [B, L], seq_len [B]) -> [B, D]: item GRU || feature GRU -> dense -> last real position."""

    def __init__(self, cfg: GRU4RecFConfig, item_embedding: nn.Embedding):
        super().__init__()
        d = cfg.embedding_size
        self.features = list(cfg.selected_features)
        self.item_embedding = item_embedding
        self.feature_embeddings = nn.ModuleDict(
            {f: nn.Embedding(cfg.feature_vocab_sizes[f], d, padding_idx=0) for f in self.features}
        )
        for f in self.features:
            self.register_buffer(f"table_{f}", torch.zeros(cfg.n_items, cfg.feature_lengths[f], dtype=torch.long))
        self.item_gru = nn.GRU(d, cfg.hidden_size, cfg.num_layers, bias=False, batch_first=True)
        self.feature_gru = nn.GRU(d * len(self.features), cfg.hidden_size, cfg.num_layers, bias=False, batch_first=True)
        self.dense = nn.Linear(2 * cfg.hidden_size, d)
        self.dropout = Dropout(cfg.dropout_prob)
        nn.init.xavier_normal_(self.dense.weight)
        nn.init.zeros_(self.dense.bias)

    def pooled_features(self, item_seq: Tensor) -> Tensor:
        """Sum of each item's feature-token embeddings (padding embeds to zero), features concatenated.

        In torch the sums are taken once per item and then looked up per position: the same numbers, and
        a training step 1.3x faster than pooling [B, L, tokens, D] lookups. The exported graph pools per
        position instead, so a request for one user costs nothing in the size of the catalog."""
        if torch.onnx.is_in_onnx_export():
            return self._pool([getattr(self, f"table_{f}")[item_seq] for f in self.features])
        return F.embedding(item_seq, self._pool([getattr(self, f"table_{f}") for f in self.features]))

    def _pool(self, token_ids: list[Tensor]) -> Tensor:
        return torch.cat([self.feature_embeddings[f](ids).sum(-2) for f, ids in zip(self.features, token_ids)], dim=-1)

    def forward(self, item_seq: Tensor, seq_len: Tensor) -> Tensor:
        item_out, feature_out = self.sequence_outputs(item_seq)
        last = (seq_len - 1).clamp(min=0)  # read the last real position before the dense layer: 50x less work
        return self.dense(torch.cat([gather_positions(item_out, last), gather_positions(feature_out, last)], dim=-1))

    def sequence_outputs(self, item_seq: Tensor) -> tuple[Tensor, Tensor]:
        """Both GRUs' outputs at every position [B, L, hidden]: position i has read items 0..i only."""
        item_out, _ = self.item_gru(self.dropout(self.item_embedding(item_seq)))
        feature_out, _ = self.feature_gru(self.pooled_features(item_seq))
        return item_out, feature_out

    def at_positions(self, item_seq: Tensor, positions: Tensor) -> Tensor:
        """The user vector after each position where `positions` [B, L] is true: [M, D] (train_mode window)."""
        item_out, feature_out = self.sequence_outputs(item_seq)
        return self.dense(torch.cat([item_out[positions], feature_out[positions]], dim=-1))


class GRU4RecF(RecModel):
    kind = "gru4recf"

    def __init__(self, cfg: GRU4RecFConfig):
        super().__init__()
        self.cfg = cfg
        self.item_embedding = nn.Embedding(cfg.n_items, cfg.embedding_size, padding_idx=0)
        # RecBole's xavier_normal_initialization covers Embedding and Linear, not the feature layer or GRUs.
        nn.init.xavier_normal_(self.item_embedding.weight)
        self.item_encoder = Lookup(self.item_embedding)
        self.user_encoder = GRU4RecFUserEncoder(cfg, self.item_embedding)
        self.scorer = DotScorer()

    def set_item_features(self, tables: dict[str, Tensor]) -> None:
        for f in self.cfg.selected_features:
            getattr(self.user_encoder, f"table_{f}").copy_(tables[f])

    def compute_loss(self, batch: dict[str, Tensor]) -> Tensor:
        if "target" not in batch:  # train_mode window
            return self.window_loss(batch["item_seq"], batch["seq_len"])
        user = self.user_encoder(batch["item_seq"], batch["seq_len"])
        return F.cross_entropy(user @ self.item_embedding.weight.T, batch["target"])

    def window_loss(self, window: Tensor, seq_len: Tensor) -> Tensor:
        """The next-item loss at every position of each window [B, L + 1], averaged over all targets of the
        batch. The GRUs are causal, so the output after item i is the one the prefix sample ending at i gets:
        this is the loss of the windows' prefix samples (each weighted alike), in one pass over each window
        instead of one per prefix."""
        inputs, targets = window[:, :-1], window[:, 1:]
        has_target = torch.arange(inputs.shape[1], device=window.device)[None, :] < (seq_len - 1)[:, None]
        user = self.user_encoder.at_positions(inputs, has_target)
        return F.cross_entropy(user @ self.item_embedding.weight.T, targets[has_target])

    def user_vectors(self, batch: dict[str, Tensor]) -> Tensor:
        return self.user_encoder(batch["item_seq"], batch["seq_len"])

    def item_vectors(self) -> Tensor:
        return self.item_embedding.weight

    def onnx_parts(self) -> dict[str, OnnxPart]:
        return {
            "item_encoder": id_part(self.item_encoder, "item_idx", "item_vectors", "items"),
            "user_encoder": sequence_part(self.user_encoder),
            "scorer": self.scorer_part(self.cfg.embedding_size),
        }

def build_config(data, opts) -> GRU4RecFConfig:
    """The config for `opts.features` of an interaction dataset, by default every token and token_seq field of
    its .item file (a fixed default fits one dataset only: `class` is the synthetic data's); a missing feature
    is a data error. Says which features it took."""
    features = list(opts.features or data.item_features)
    missing = [f for f in features if f not in data.item_features]
    if missing or not features:
        raise DatasetMismatch(".item", f"GRU4RecF needs item feature(s) {missing or '(token or token_seq fields)'}; "
                                       f"the file has {sorted(data.item_features) or 'none'} (choose with --features)")
    log.info("gru4recf: item features %s (%s; choose with --features)", ", ".join(features),
             "as asked" if opts.features else "every token and token_seq field of the .item file")
    return GRU4RecFConfig(n_items=len(data.items), max_seq_length=opts.max_seq_length,
                          selected_features=features,
                          feature_vocab_sizes={f: len(data.feature_vocabs[f]) for f in features},
                          feature_lengths={f: data.item_features[f].shape[1] for f in features})


RECIPE = Recipe(
    kind="gru4recf", model=GRU4RecF, config=GRU4RecFConfig, family="interactions",
    summary="parallel GRUs over item ids and item features (--features)",
    build_config=build_config,
    attach=lambda model, data, opts: model.set_item_features(
        {f: torch.from_numpy(data.item_features[f]) for f in model.cfg.selected_features}),
    # batch_size: targets a step (window mode); 256 reached ml-1m's published NDCG@10 in 5 minutes (benchmarks 11).
    defaults={"batch_size": 256, "lr": 1e-3, "epochs": 30, "monitor": "ndcg@10"},
    reference={"model.train_mode": "prefix", "train.batch_size": 2048},
    limits={"embedding_size": AT_LEAST_1, "hidden_size": AT_LEAST_1, "num_layers": AT_LEAST_1,
            "dropout_prob": PROBABILITY, "train_mode": TRAIN_MODES},
    from_data=("max_seq_length", "selected_features"), data_options=("max_seq_length", "features"),
)
