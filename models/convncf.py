"""ConvNCF (He et al., 2018), after RecBole 1.2.1's `convncf.py`.

The outer product of a user and an item embedding is a D x D "interaction map"; a CNN whose kernels equal
its strides shrinks it to 1 x 1, and a linear layer gives the score. Trained with ConvNCF's BPR loss
(sum of log(1 + exp(-(pos - neg)))) plus L2 norms of the embeddings and of the CNN/predictor weights.

Batch fields: training {"user", "pos_item", "neg_item"}; evaluation {"user"}.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.base import OnnxPart, RecModel, id_part
from models.layers import Dropout, Lookup
from models.limits import AT_LEAST_1, NON_NEGATIVE, PROBABILITY
from models.recipe import Recipe


@dataclass
class ConvNCFConfig:
    n_users: int                      # users including padding index 0
    n_items: int                      # items including padding index 0
    embedding_size: int = 64          # user and item embedding size (the map is embedding_size^2)
    cnn_channels: list[int] = field(default_factory=lambda: [1, 32, 32, 32, 32])  # channels per CNN layer
    cnn_kernels: list[int] = field(default_factory=lambda: [4, 4, 2, 2])          # kernel size per layer
    cnn_strides: list[int] = field(default_factory=lambda: [4, 4, 2, 2])          # stride per layer
    dropout_prob: float = 0.2         # dropout before the prediction layer
    reg_weights: list[float] = field(default_factory=lambda: [0.1, 0.1])         # L2 on embeddings, on CNN/predictor


class InteractionMapCNN(nn.Module):
    """scorer(user [B, D], items [B, K, D]) -> [B, K]: outer product -> CNN -> sum-pool -> linear.

    When every kernel equals its stride (the reference's layout) the patches never overlap, so each conv is
    a reshape plus one matrix product over the patches. Built in the right order, the outer product *is*
    the first layer's patch matrix and every later layer's input is a free reshape of the previous output
    (`_patch_cnn`). Same parameters and same numbers as the Conv2d stack, with a cheaper backward:
    measured here 2.7x faster per training step than torch's (oneDNN) Conv2d; the full sort goes further
    (`score_all`). ONNX Runtime's Conv beats its own MatMul version (1.07 vs 1.64 ms for 100 candidates), so the
    exported graph keeps the Conv2d stack.
    """

    def __init__(self, cfg: ConvNCFConfig):
        super().__init__()
        layers: list[nn.Module] = []
        for c_in, c_out, k, s in zip(cfg.cnn_channels[:-1], cfg.cnn_channels[1:], cfg.cnn_kernels, cfg.cnn_strides):
            layers += [nn.Conv2d(c_in, c_out, k, s), nn.ReLU()]
        self.cnn = nn.Sequential(*layers)
        self.dropout = Dropout(cfg.dropout_prob)
        self.predict = nn.Linear(cfg.cnn_channels[-1], 1)
        self.patch_grid = _patch_grid(cfg.embedding_size, cfg.cnn_kernels, cfg.cnn_strides)

    def forward(self, user: Tensor, items: Tensor) -> Tensor:
        b, k, d = items.shape
        users = user.unsqueeze(1).expand(b, k, d).reshape(b * k, d)
        items = items.reshape(b * k, d)
        if self.patch_grid is not None and not torch.onnx.is_in_onnx_export():
            features = self._patch_cnn(users, items)
        else:
            maps = users.unsqueeze(-1) * items.unsqueeze(-2)  # [B*K, D, D]
            features = self.cnn(maps.unsqueeze(1)).sum(dim=(2, 3))
        return self.predict(self.dropout(features)).view(b, k)

    def _patch_cnn(self, users: Tensor, items: Tensor) -> Tensor:
        """The CNN as matrix products. With D = r * k_L * ... * k_1, index p of a D-vector is the digits
        (r, i_L, ..., i_1); the outer product laid out as (r, r', i_L, j_L, ..., i_1, j_1) has layer 1's
        patches (i_1, j_1) innermost, layer 2's (i_2, j_2, channel) next, and so on."""
        n, grid = users.shape[0], self.patch_grid
        m = len(grid)
        # bmm then permute: its backward is two batched mat-vecs, 2x faster than a broadcast product's
        maps = torch.bmm(users.unsqueeze(2), items.unsqueeze(1)).view(n, *grid, *grid)
        return self._patch_layers(maps.permute(_interleaved(m)), n, first=0)

    def _patch_layers(self, x: Tensor, n: int, first: int) -> Tensor:
        """Conv layers first.. as matrix products over x laid out as in `_patch_cnn`, then the sum-pool."""
        for conv in self.cnn[::2][first:]:
            weight = conv.weight.permute(0, 2, 3, 1).reshape(conv.out_channels, -1)  # (out, ki, kj, in)
            x = F.linear(x.reshape(-1, weight.shape[1]), weight, conv.bias).relu_()
        return x.reshape(n, -1, x.shape[-1]).sum(dim=1)  # sum-pool whatever r x r' grid is left

    def score_all(self, users: Tensor, items: Tensor, rows: int = 128) -> Tensor:
        """Scores [U, V] of every (user, item) pair, for the full sort (no gradients needed).

        Layer 1 is bilinear: its output at patch (a, b) is sum_ij W[o, i, j] u_a[i] v_b[j]. So the item's
        half, T_v[i, (b, o)] = sum_j W[o, i, j] v_b[j], is computed once per item, and each call scores one
        item against `rows` users with one small matrix product instead of an outer product and a
        16-deep one: a quarter of layer 1's work."""
        grid, conv1 = self.patch_grid, self.cnn[0]
        k1, digits = grid[-1], grid[:-1]
        blocks, channels, m = items.shape[1] // k1, conv1.out_channels, len(digits)
        item_half = torch.einsum("vbj,oij->vibo", items.reshape(len(items), blocks, k1), conv1.weight[:, 0])
        item_half = item_half.reshape(len(items), k1, blocks * channels)
        user_blocks = users.reshape(-1, k1)
        interleaved = _interleaved(m) + [2 * m + 1]  # channels stay last
        scores = users.new_empty(len(users), len(items))
        for start in range(0, len(users), rows):
            part = user_blocks[start * blocks:(start + rows) * blocks]
            n = len(part) // blocks
            for v in range(len(items)):
                x = (part @ item_half[v]).view(n, blocks, blocks, channels).add_(conv1.bias).relu_()
                x = x.view(n, *digits, *digits, channels).permute(interleaved)
                features = self._patch_layers(x, n, first=1)
                scores[start:start + n, v] = self.predict(self.dropout(features)).squeeze(-1)
        return scores


def _interleaved(m: int) -> list[int]:
    """Permutation of (batch, a_1..a_m, b_1..b_m) to (batch, a_1, b_1, ..., a_m, b_m)."""
    return [0] + [d for i in range(1, m + 1) for d in (i, i + m)]


def _patch_grid(dim: int, kernels: list[int], strides: list[int]) -> list[int] | None:
    """The digit sizes (r, k_L, ..., k_1) that lay a dim-vector out for `_patch_cnn`, or None when the
    convs overlap or do not tile the map exactly (then only the Conv2d path is used)."""
    if list(kernels) != list(strides):
        return None
    rest = dim
    for k in kernels:
        if rest % k:
            return None
        rest //= k
    return [rest, *reversed(kernels)]


class ConvNCF(RecModel):
    kind = "convncf"
    user_input = "user_id"
    scorer_kind = "pairwise"

    def __init__(self, cfg: ConvNCFConfig):
        super().__init__()
        self.cfg = cfg
        self.user_embedding = nn.Embedding(cfg.n_users, cfg.embedding_size)
        self.item_embedding = nn.Embedding(cfg.n_items, cfg.embedding_size)
        self.item_encoder = Lookup(self.item_embedding)
        self.user_encoder = Lookup(self.user_embedding)
        self.scorer = InteractionMapCNN(cfg)

    def compute_loss(self, batch: dict[str, Tensor]) -> Tensor:
        return self.bpr_loss(batch) + self.reg_loss()

    def data_parallel_loss(self, batch: dict[str, Tensor], share: float, world_size: int) -> Tensor:
        # The BPR term sums over samples, so the slices' terms add up to the batch's: world_size times each
        # averages to it. The regulariser is over the whole model, the same on every rank.
        return world_size * self.bpr_loss(batch) + self.reg_loss()

    def bpr_loss(self, batch: dict[str, Tensor]) -> Tensor:
        user = self.user_embedding(batch["user"])
        items = self.item_embedding(torch.stack([batch["pos_item"], batch["neg_item"]], dim=1))
        scores = self.scorer(user, items)
        return F.softplus(-(scores[:, 0] - scores[:, 1])).sum()  # = sum log(1 + exp(-(pos - neg)))

    def reg_loss(self) -> Tensor:
        reg_emb, reg_cnn = self.cfg.reg_weights
        loss = reg_emb * (self.user_embedding.weight.norm(2) + self.item_embedding.weight.norm(2))
        for name, param in self.scorer.named_parameters():
            if name.endswith("weight"):
                loss = loss + reg_cnn * param.norm(2)
        return loss

    def user_vectors(self, batch: dict[str, Tensor]) -> Tensor:
        return self.user_embedding(batch["user"])

    def full_sort_scores(self, user_vectors: Tensor, item_vectors: Tensor | None = None) -> Tensor:
        if self.scorer.patch_grid is None:
            return super().full_sort_scores(user_vectors, item_vectors)
        scores = self.scorer.score_all(user_vectors, self.item_vectors() if item_vectors is None else item_vectors)
        scores[:, 0] = float("-inf")
        return scores

    def item_vectors(self) -> Tensor:
        return self.item_embedding.weight

    def onnx_parts(self) -> dict[str, OnnxPart]:
        return {
            "item_encoder": id_part(self.item_encoder, "item_idx", "item_vectors", "items"),
            "user_encoder": id_part(self.user_encoder, "user_idx", "user_vectors", "batch"),
            "scorer": self.scorer_part(self.cfg.embedding_size),
        }

def cnn_fits(values: dict) -> str | None:
    """The CNN's layer lists agree in length, its input is the one-channel map, and every layer's kernel
    fits what the previous layers leave of the embedding_size x embedding_size map."""
    channels, kernels, strides = values.get("cnn_channels"), values.get("cnn_kernels"), values.get("cnn_strides")
    if channels is None or kernels is None or strides is None:
        return None
    if not (len(channels) == len(kernels) + 1 == len(strides) + 1):
        return (f"model.cnn_channels: needs one entry more than model.cnn_kernels and model.cnn_strides (one per "
                f"layer, plus the input's); got {len(channels)}, {len(kernels)}, {len(strides)}")
    if channels[0] != 1:
        return f"model.cnn_channels: the first entry is the input map's channel count, 1; got {channels[0]}"
    size = values.get("embedding_size", 64)
    for layer, (k, s) in enumerate(zip(kernels, strides), 1):
        if k > size:
            return (f"model.cnn_kernels: layer {layer}'s kernel {k} is larger than the {size}x{size} map it gets "
                    f"(embedding_size {values.get('embedding_size', 64)}, strides {strides})")
        size = (size - k) // s + 1
    return None


RECIPE = Recipe(
    kind="convncf", model=ConvNCF, config=ConvNCFConfig, family="interactions",
    summary="outer-product CNN collaborative filtering over user and item ids",
    build_config=lambda data, opts: ConvNCFConfig(n_users=len(data.users), n_items=len(data.items)),
    defaults={"batch_size": 2048, "lr": 1e-3, "epochs": 10, "monitor": "ndcg@10"},  # RecBole 1.2.1's batch size
    limits={"embedding_size": AT_LEAST_1, "cnn_channels": AT_LEAST_1, "cnn_kernels": AT_LEAST_1,
            "cnn_strides": AT_LEAST_1, "dropout_prob": PROBABILITY, "reg_weights": NON_NEGATIVE},
    checks=(cnn_fits,),
)
