"""NRMS (Wu et al., 2019), after Microsoft recommenders' `nrms.py`, with its defaults.

News encoder: word embedding -> dropout -> multi-head self-attention -> dropout -> additive attention.
User encoder: the history's news *vectors* -> multi-head self-attention -> additive attention, so the
service can feed it cached news encodings. Scorer: dot product + sigmoid (a click probability).
Unlike the reference, padding is masked in every attention, so padding never changes a vector and an empty
history gives a zero user vector instead of NaN.

Batch fields: training {"history" [B, H], "history_len" [B], "candidates" [B, 1 + npratio]} with the
clicked news in column 0; evaluation {"history", "history_len"}.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from models.base import DotScorer, NewsRecModel, OnnxPart
from models.layers import AdditiveAttention, Dropout, MultiHeadSelfAttention
from models.limits import AT_LEAST_1, PROBABILITY, SettingError
from models.recipe import Recipe


@dataclass
class NRMSConfig:
    n_news: int                       # news including padding index 0
    vocab_size: int                   # words including padding index 0
    word_emb_dim: int = 50            # word embedding size (GloVe 6B 50d by default)
    title_size: int = 30              # tokens per title
    his_size: int = 50                # clicked news the user encoder reads
    head_num: int = 20                # self-attention heads
    head_dim: int = 20                # size of each head; news vector = head_num * head_dim
    attention_hidden_dim: int = 200   # additive attention hidden size
    dropout: float = 0.2              # dropout around the news encoder's self-attention
    npratio: int = 4                  # non-clicked news per click in training


class NewsEncoder(nn.Module):
    """title_tokens [N, T] -> news vectors [N, head_num * head_dim]."""

    def __init__(self, cfg: NRMSConfig):
        super().__init__()
        dim = cfg.head_num * cfg.head_dim
        self.word_embedding = nn.Embedding(cfg.vocab_size, cfg.word_emb_dim, padding_idx=0)
        self.dropout = Dropout(cfg.dropout)
        self.self_attention = MultiHeadSelfAttention(cfg.word_emb_dim, cfg.head_num, cfg.head_dim)
        self.attention = AdditiveAttention(dim, cfg.attention_hidden_dim)

    def forward(self, title_tokens: Tensor) -> Tensor:
        mask = title_tokens > 0
        x = self.dropout(self.word_embedding(title_tokens))
        x = self.dropout(self.self_attention(x, mask))
        return self.attention(x, mask)


class UserEncoder(nn.Module):
    """(history_vectors [B, H, D], history_mask [B, H]) -> user vectors [B, D]."""

    def __init__(self, cfg: NRMSConfig):
        super().__init__()
        dim = cfg.head_num * cfg.head_dim
        self.self_attention = MultiHeadSelfAttention(dim, cfg.head_num, cfg.head_dim)
        self.attention = AdditiveAttention(dim, cfg.attention_hidden_dim)

    def forward(self, history_vectors: Tensor, history_mask: Tensor) -> Tensor:
        return self.attention(self.self_attention(history_vectors, history_mask), history_mask)


def encode_titles(encoder: NewsEncoder, tokens: Tensor, buckets: int = 8) -> Tensor:
    """Encode titles in length buckets, each trimmed to its longest title. Masking makes the trim exact,
    and most titles are far shorter than title_size, so this skips most of the padding's work."""
    lengths = (tokens > 0).sum(1)
    order = torch.argsort(lengths)
    parts = []
    for rows in order.chunk(buckets):
        width = int(lengths[rows].max().clamp(min=1))
        parts.append(encoder(tokens[rows, :width]))
    return torch.cat(parts)[torch.argsort(order)]


class NRMS(NewsRecModel):
    kind = "nrms"
    user_input = "news_vectors"
    scorer_kind = "dot_sigmoid"

    def __init__(self, cfg: NRMSConfig):
        super().__init__()
        self.cfg = cfg
        self.dim = cfg.head_num * cfg.head_dim
        self.register_buffer("title_tokens", torch.zeros(cfg.n_news, cfg.title_size, dtype=torch.long))
        self.item_encoder = NewsEncoder(cfg)
        self.user_encoder = UserEncoder(cfg)
        self.scorer = DotScorer(sigmoid=True)

    @property
    def n_items(self) -> int:
        return self.cfg.n_news

    def set_word_vectors(self, vectors: Tensor) -> None:
        self.item_encoder.word_embedding.weight.data.copy_(vectors)

    def set_titles(self, title_tokens: Tensor) -> None:
        self.title_tokens.copy_(title_tokens)

    def training_news_vectors(self, news_idx: Tensor) -> Tensor:
        return encode_titles(self.item_encoder, self.title_tokens[news_idx])

    def encode_news(self, news_idx: Tensor | None = None, batch_size: int = 1024) -> Tensor:
        """News vectors for the given news indices (all news by default), row 0 / padding = zeros."""
        device = self.title_tokens.device
        idx = torch.arange(self.cfg.n_news, device=device) if news_idx is None else news_idx.to(device)
        out = [encode_titles(self.item_encoder, self.title_tokens[idx[i : i + batch_size]])
               for i in range(0, len(idx), batch_size)]
        vectors = torch.cat(out) if out else torch.zeros(0, self.dim, device=device)
        return vectors * (idx > 0).unsqueeze(1).to(vectors.dtype)

    def onnx_parts(self) -> dict[str, OnnxPart]:
        tokens = torch.tensor([[3, 4, 5, 0], [6, 0, 0, 0], [7, 8, 0, 0]])
        item = OnnxPart(self.item_encoder, {"title_tokens": tokens}, "item_vectors",
                        {"title_tokens": {0: "items", 1: "tokens"}, "item_vectors": {0: "items"}})
        history = {"history_vectors": torch.randn(2, 3, self.dim), "history_mask": torch.tensor([[1.0, 1, 0], [1, 0, 0]])}
        user = OnnxPart(self.user_encoder, history, "user_vectors",
                        {"history_vectors": {0: "batch", 1: "history"}, "history_mask": {0: "batch", 1: "history"},
                         "user_vectors": {0: "batch"}})
        return {"item_encoder": item, "user_encoder": user, "scorer": self.scorer_part(self.dim)}

def build_config(data, opts) -> NRMSConfig:
    """The config for a MIND dataset: its news and word dictionary, and the word vectors' size when given."""
    cfg = NRMSConfig(n_news=len(data.news), vocab_size=data.tokenizer.vocab_size)
    if data.word_vectors is not None:
        cfg.word_emb_dim = data.word_vectors.shape[1]
    return cfg


def attach(model: NRMS, data, opts) -> None:
    """The catalog's title tokens, and the pretrained word vectors when the dataset has them."""
    if data.word_vectors is not None:
        if data.word_vectors.shape[1] != model.cfg.word_emb_dim:
            raise SettingError(f"model.word_emb_dim: the word vectors given have {data.word_vectors.shape[1]} "
                               f"dimensions, so it must be {data.word_vectors.shape[1]}; got {model.cfg.word_emb_dim}")
        model.set_word_vectors(torch.from_numpy(data.word_vectors))
    model.set_titles(torch.from_numpy(data.news.title_tokens))


RECIPE = Recipe(
    kind="nrms", model=NRMS, config=NRMSConfig, family="news",
    summary="news recommendation with multi-head self-attention over titles (MIND data)",
    build_config=build_config, attach=attach,
    defaults={"batch_size": 32, "lr": 5e-4, "epochs": 5, "monitor": "group_auc", "patience": 2},  # recommenders'
    limits={"word_emb_dim": AT_LEAST_1, "title_size": AT_LEAST_1, "his_size": AT_LEAST_1, "head_num": AT_LEAST_1,
            "head_dim": AT_LEAST_1, "attention_hidden_dim": AT_LEAST_1, "dropout": PROBABILITY, "npratio": AT_LEAST_1},
    data_options=("word_vectors",),
)
