"""BERT4Rec (Sun et al., 2019), after RecBole 1.2.1's `bert4rec.py`.

A bidirectional transformer over the item sequence. Training masks a share of positions (mask_ratio) and
predicts the masked items; a share of samples (ft_ratio) masks only the last item, which is exactly the
inference task. At inference a mask token is appended after the last real item and the output head's vector
there is the user vector. Scores = head output . item embedding + per-item bias; the bias is folded into
the item vector as one extra dimension (and a constant 1 on the user side) so scoring is a pure dot product.

Batch fields: training {"item_seq", "seq_len", "target"} (the target is appended to the sequence);
evaluation {"item_seq", "seq_len"}.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.base import DotScorer, OnnxPart, RecModel, id_part, sequence_part
from models.layers import Dropout, gather_positions
from models.limits import AT_LEAST_1, PROBABILITY, SHARE, TRAIN_MODES, Range, divides
from models.recipe import Recipe


@dataclass
class BERT4RecConfig:
    n_items: int                     # items including padding index 0; the mask token is index n_items
    n_layers: int = 2                # transformer layers
    n_heads: int = 2                 # attention heads
    hidden_size: int = 64            # item embedding and transformer width
    inner_size: int = 256            # feed-forward width
    hidden_dropout_prob: float = 0.1 # dropout on embeddings and sub-layer outputs (BERT4Rec's paper: 0.1; RecBole:
                                     # 0.2, which left the 64-wide model under-fitted on ml-1m: docs/benchmarks.md 11)
    attn_dropout_prob: float = 0.1   # dropout on attention weights (RecBole: 0.2)
    layer_norm_eps: float = 1e-12    # LayerNorm epsilon
    initializer_range: float = 0.02  # std of the normal initialisation
    mask_ratio: float = 0.4          # share of positions masked in training (RecBole: 0.2; on ml-1m 30% did
                                     # better, 40% better still: docs/benchmarks.md 11)
    ft_ratio: float = 0.1            # share of training samples that mask only the last item (RecBole: 0.5)
    max_seq_length: int = 50         # longest history; one more position holds the mask token
    train_mode: str = "window"       # "window": cloze over whole windows of a user's sequence, one sample per
                                     # window (BERT4Rec's own training); "prefix": one sample per prefix, last
                                     # item masked or cloze (RecBole 1.2.1's recipe, ~20x the time an epoch)


class TransformerLayer(nn.Module):
    """RecBole's post-LN layer: attention (+ residual, LayerNorm), then feed-forward (+ residual, LayerNorm)."""

    def __init__(self, cfg: BERT4RecConfig):
        super().__init__()
        h = cfg.hidden_size
        self.n_heads, self.head_dim = cfg.n_heads, h // cfg.n_heads
        self.qkv = nn.Linear(h, 3 * h)
        self.attn_out = nn.Linear(h, h)
        self.attn_dropout = Dropout(cfg.attn_dropout_prob)
        self.ln1 = nn.LayerNorm(h, eps=cfg.layer_norm_eps)
        self.ff_in = nn.Linear(h, cfg.inner_size)
        self.ff_out = nn.Linear(cfg.inner_size, h)
        self.ln2 = nn.LayerNorm(h, eps=cfg.layer_norm_eps)
        self.dropout = Dropout(cfg.hidden_dropout_prob)

    def forward(self, x: Tensor, key_bias: Tensor) -> Tensor:  # key_bias [B, 1, 1, L]: 0 real, -10000 pad
        b, t, h = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(self.head_dim) + key_bias, dim=-1)
        attended = (self.attn_dropout(weights) @ v).transpose(1, 2).reshape(b, t, h)
        x = self.ln1(x + self.dropout(self.attn_out(attended)))
        return self.ln2(x + self.dropout(self.ff_out(F.gelu(self.ff_in(x)))))


class BERT4RecNetwork(nn.Module):
    """item sequence with mask tokens [B, L] -> output-head vectors at every position [B, L, H]."""

    def __init__(self, cfg: BERT4RecConfig, item_embedding: nn.Embedding):
        super().__init__()
        h = cfg.hidden_size
        self.item_embedding = item_embedding
        self.position_embedding = nn.Embedding(cfg.max_seq_length + 1, h)
        self.ln = nn.LayerNorm(h, eps=cfg.layer_norm_eps)
        self.dropout = Dropout(cfg.hidden_dropout_prob)
        self.layers = nn.ModuleList(TransformerLayer(cfg) for _ in range(cfg.n_layers))
        self.head = nn.Sequential(nn.Linear(h, h), nn.GELU(), nn.LayerNorm(h, eps=cfg.layer_norm_eps))

    def forward(self, seq: Tensor) -> Tensor:
        positions = torch.arange(seq.shape[1], device=seq.device)
        x = self.dropout(self.ln(self.item_embedding(seq) + self.position_embedding(positions)))
        key_bias = ((seq == 0).to(x.dtype) * -10000.0)[:, None, None, :]
        for layer in self.layers:
            x = layer(x, key_bias)
        return self.head(x)


def append_mask(item_seq: Tensor, seq_len: Tensor, mask_token: int) -> Tensor:
    """[B, L] left-aligned sequences -> [B, L + 1] with the mask token at position seq_len (vectorised)."""
    padded = F.pad(item_seq, (0, 1))
    is_mask = torch.arange(padded.shape[1], device=padded.device)[None, :] == seq_len[:, None]
    return torch.where(is_mask, torch.full_like(padded, mask_token), padded)


class BERT4RecUserEncoder(nn.Module):
    """(item_seq [B, L], seq_len [B]) -> [B, H + 1]: head output at an appended mask token, then a 1."""

    def __init__(self, network: BERT4RecNetwork, mask_token: int):
        super().__init__()
        self.network = network
        self.mask_token = mask_token

    def forward(self, item_seq: Tensor, seq_len: Tensor) -> Tensor:
        out = gather_positions(self.network(append_mask(item_seq, seq_len, self.mask_token)), seq_len)
        return torch.cat([out, torch.ones_like(out[:, :1])], dim=1)


class BERT4RecItemEncoder(nn.Module):
    """item_idx [N] -> [N, H + 1]: the item embedding with its output bias as the last dimension."""

    def __init__(self, item_embedding: nn.Embedding, output_bias: nn.Parameter):
        super().__init__()
        self.item_embedding = item_embedding
        self.output_bias = output_bias

    def forward(self, item_idx: Tensor) -> Tensor:
        return torch.cat([self.item_embedding(item_idx), self.output_bias[item_idx].unsqueeze(1)], dim=1)


class BERT4Rec(RecModel):
    kind = "bert4rec"

    def __init__(self, cfg: BERT4RecConfig):
        super().__init__()
        self.cfg = cfg
        self.mask_token = cfg.n_items
        self.item_embedding = nn.Embedding(cfg.n_items + 1, cfg.hidden_size, padding_idx=0)
        self.output_bias = nn.Parameter(torch.zeros(cfg.n_items))
        self.network = BERT4RecNetwork(cfg, self.item_embedding)
        self.apply(self._init_weights)
        self.item_encoder = BERT4RecItemEncoder(self.item_embedding, self.output_bias)
        self.user_encoder = BERT4RecUserEncoder(self.network, self.mask_token)
        self.scorer = DotScorer()

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            module.weight.data.normal_(0.0, self.cfg.initializer_range)
        if isinstance(module, nn.Linear) and module.bias is not None:
            module.bias.data.zero_()
        if isinstance(module, nn.LayerNorm):
            module.bias.data.zero_()
            module.weight.data.fill_(1.0)

    def compute_loss(self, batch: dict[str, Tensor]) -> Tensor:
        """Cloze loss over a prefix sample's history + target (train_mode prefix) or over a whole window of a
        user's sequence (train_mode window: batches without "target"), whose last item plays the target."""
        if "target" in batch:
            seq = append_mask(batch["item_seq"], batch["seq_len"], 0)  # room for the target
            seq, last = seq.scatter(1, batch["seq_len"][:, None], batch["target"][:, None]), batch["seq_len"]
        else:
            seq, last = batch["item_seq"], batch["seq_len"] - 1
        masked = self._training_mask(seq, last)
        hidden = self.network(seq.masked_fill(masked, self.mask_token))[masked]  # [M, H]
        logits = hidden @ self.item_embedding.weight[: self.cfg.n_items].T + self.output_bias
        return F.cross_entropy(logits, seq[masked])

    def _training_mask(self, seq: Tensor, last: Tensor) -> Tensor:
        """Cloze masking: each real item with probability mask_ratio; ft_ratio of the rows mask only the
        last item. Every row masks at least its last item, so no sample goes unused."""
        positions = torch.arange(seq.shape[1], device=seq.device)[None, :]
        is_last = positions == last[:, None]
        random = (torch.rand(seq.shape, device=seq.device) < self.cfg.mask_ratio) & (seq > 0)
        only_last = torch.rand(seq.shape[0], 1, device=seq.device) < self.cfg.ft_ratio
        return torch.where(only_last, is_last, random | is_last)

    def user_vectors(self, batch: dict[str, Tensor]) -> Tensor:
        return self.user_encoder(batch["item_seq"], batch["seq_len"])

    def item_vectors(self) -> Tensor:
        return self.item_encoder(torch.arange(self.cfg.n_items, device=self.output_bias.device))

    def onnx_parts(self) -> dict[str, OnnxPart]:
        return {
            "item_encoder": id_part(self.item_encoder, "item_idx", "item_vectors", "items"),
            "user_encoder": sequence_part(self.user_encoder),
            "scorer": self.scorer_part(self.cfg.hidden_size + 1),
        }

RECIPE = Recipe(
    kind="bert4rec", model=BERT4Rec, config=BERT4RecConfig, family="interactions",
    summary="bidirectional transformer over item sequences",
    build_config=lambda data, opts: BERT4RecConfig(n_items=len(data.items), max_seq_length=opts.max_seq_length),
    # batch_size: targets a step (window mode): a cosine over 80 epochs of 1024 targets at lr 2e-3, with dropout
    # 0.1 and 40% masked (docs/benchmarks.md 11: ml-1m test NDCG@10 0.154 in 16 minutes on two cores; 0.150-0.154
    # in 10-12 over 50 epochs; at 20% masked, 180 epochs over-fitted while the rate was still high). Sized for data
    # of ml-1m's scale and up (~800 steps an epoch there): a small dataset, tens of steps an epoch, needs more
    # epochs (the tests' 400 users: 180). No early stopping (patience = epochs): the rate's fall is where the gains
    # come. The best epoch is kept either way.
    defaults={"batch_size": 1024, "lr": 2e-3, "epochs": 80, "lr_schedule": "cosine", "patience": 80,
              "monitor": "ndcg@10"},
    reference={"model.train_mode": "prefix", "model.ft_ratio": 0.5, "model.mask_ratio": 0.2,
               "model.hidden_dropout_prob": 0.2, "model.attn_dropout_prob": 0.2, "train.batch_size": 2048,
               "train.lr": 1e-3, "train.lr_schedule": "constant", "train.patience": 3, "train.epochs": 10},
    limits={"n_layers": AT_LEAST_1, "n_heads": AT_LEAST_1, "hidden_size": AT_LEAST_1, "inner_size": AT_LEAST_1,
            "hidden_dropout_prob": PROBABILITY, "attn_dropout_prob": PROBABILITY,
            "layer_norm_eps": Range(0, low_open=True), "initializer_range": Range(0, low_open=True),
            "mask_ratio": Range(0, 1, low_open=True), "ft_ratio": SHARE, "train_mode": TRAIN_MODES},
    checks=(divides("n_heads", "hidden_size"),),
    from_data=("max_seq_length",), data_options=("max_seq_length",),
)
