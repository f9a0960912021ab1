"""Layers shared by the models: masked attention pieces and small helpers.

Masks are float or bool tensors with 1/True = real position, 0/False = padding. Every attention here masks
padding so that extra padding never changes an output, and an all-padding input gives a zero vector rather
than NaN (the -1e9 fill keeps softmax finite; multiplying by the mask then zeroes the all-padding case).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def masked_softmax(scores: Tensor, mask: Tensor, dim: int = -1) -> Tensor:
    mask = mask.to(scores.dtype)
    weights = torch.softmax(scores.masked_fill(mask == 0, -1e9), dim=dim)
    return weights * mask


class AdditiveAttention(nn.Module):
    """recommenders' AttLayer2: a = softmax(q . tanh(W x + b)); output = sum_t a_t x_t."""

    def __init__(self, input_dim: int, hidden_dim: int):
        super().__init__()
        self.proj = nn.Linear(input_dim, hidden_dim)
        self.query = nn.Linear(hidden_dim, 1, bias=False)
        nn.init.xavier_uniform_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)
        nn.init.xavier_uniform_(self.query.weight)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:  # x [B, T, D], mask [B, T] -> [B, D]
        scores = self.query(torch.tanh(self.proj(x))).squeeze(-1)
        weights = masked_softmax(scores, mask)
        return torch.einsum("bt,btd->bd", weights, x)


class MultiHeadSelfAttention(nn.Module):
    """recommenders' SelfAttention: bias-free Q/K/V projections, scaled dot product per head, heads
    concatenated (no output projection). Padded keys are masked; padded query rows are zeroed."""

    def __init__(self, input_dim: int, head_num: int, head_dim: int):
        super().__init__()
        self.head_num, self.head_dim = head_num, head_dim
        out_dim = head_num * head_dim
        self.qkv = nn.Linear(input_dim, 3 * out_dim, bias=False)
        nn.init.xavier_uniform_(self.qkv.weight)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:  # x [B, T, D], mask [B, T] -> [B, T, H*d]
        b, t, _ = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.head_num, self.head_dim).permute(2, 0, 3, 1, 4)
        mask = mask > 0
        # A row with no real key would give NaN; let it attend to position 0 (its output is zeroed below).
        first = torch.arange(t, device=x.device)[None, :] == 0
        keys = mask | (first & ~mask.any(dim=1, keepdim=True))
        # The fused kernel is ~2.5x faster than softmax(QK^T)V written out (fwd + bwd, measured on CPU).
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=keys[:, None, None, :])
        out = out.transpose(1, 2).reshape(b, t, self.head_num * self.head_dim)
        return out * mask.unsqueeze(-1).to(out.dtype)


def gather_positions(x: Tensor, positions: Tensor) -> Tensor:
    """x [B, T, D], positions [B] -> x[b, positions[b]] as [B, D] (ONNX-friendly, no Python loop)."""
    index = positions.view(-1, 1, 1).expand(-1, 1, x.shape[-1])
    return x.gather(1, index).squeeze(1)


class Lookup(nn.Module):
    """An id -> vector encoder (item and user encoders of the id-based models)."""

    def __init__(self, embedding: nn.Embedding):
        super().__init__()
        self.embedding = embedding

    def forward(self, idx: Tensor) -> Tensor:
        return self.embedding(idx)


class Dropout(nn.Dropout):
    """nn.Dropout (same p, same 1/(1-p) scaling, identity in eval) with the mask drawn by comparing
    uniform noise to p: torch's CPU bernoulli_ is slower, and this measured 1.8x faster forward and
    backward on [100, 30, 400] (about 6% of an NRMS training step)."""

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0:
            return x
        if self.p >= 1:
            return torch.zeros_like(x)
        keep = torch.empty_like(x).uniform_() >= self.p
        return x * keep.to(x.dtype).mul_(1.0 / (1.0 - self.p))
