"""Tiny but faithful bundles (docs/bundle.md) traced from small torch modules, plus the torch reference scores.

Four models, one per `user_input`/`scorer` combination of the real ones:
  nrms     : title tokens -> mean word vectors; news_vectors attention pool; dot_sigmoid; tokenizer.json
  convncf  : id embeddings; user_id; pairwise outer-product CNN scorer
  gru4recf : id embeddings; sequence GRU; dot
  bert4rec : id embeddings; sequence position-weighted mean pool; dot
`TinyModel.expected_*` computes with torch on unpadded inputs, so parity also checks the service's padding.
"""
from __future__ import annotations

import hashlib
import io
import json
import random
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from bundle.ann import INDEX_FILE, build_index
from bundle.contract import FORMAT, sha256_file
from bundle.data import BundleData, write_data_files, write_item_vectors
from models.base import DotScorer  # the scorer every dot-product model exports
from training.graph_weights import externalize

DIM, MAX_HISTORY, N_ITEMS, N_USERS, TITLE_SIZE = 8, 5, 60, 12, 6
WORDS = [f"w{i}" for i in range(1, 41)]


class IdItems(nn.Module):
    def __init__(self, n: int, dim: int):
        super().__init__()
        self.emb = nn.Embedding(n + 1, dim, padding_idx=0)

    def forward(self, item_idx: Tensor) -> Tensor:
        return self.emb(item_idx)


class TitleItems(nn.Module):
    def __init__(self, vocab: int, dim: int):
        super().__init__()
        self.words = nn.Embedding(vocab + 1, dim, padding_idx=0)
        self.proj = nn.Linear(dim, dim)

    def forward(self, title_tokens: Tensor) -> Tensor:
        mask = (title_tokens > 0).float().unsqueeze(-1)
        pooled = (self.words(title_tokens) * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return torch.tanh(self.proj(pooled))


class GruUser(nn.Module):
    def __init__(self, n: int, dim: int):
        super().__init__()
        self.emb = nn.Embedding(n + 1, dim, padding_idx=0)
        self.gru = nn.GRU(dim, dim, batch_first=True)

    def forward(self, item_seq: Tensor, seq_len: Tensor) -> Tensor:
        out, _ = self.gru(self.emb(item_seq))
        index = (seq_len - 1).view(-1, 1, 1).expand(-1, 1, out.shape[-1])
        return out.gather(1, index).squeeze(1)


class MeanUser(nn.Module):
    """Position-weighted mean of the sequence's embeddings: order matters, padding does not."""

    def __init__(self, n: int, dim: int):
        super().__init__()
        self.emb = nn.Embedding(n + 1, dim, padding_idx=0)
        self.proj = nn.Linear(dim, dim)

    def forward(self, item_seq: Tensor, seq_len: Tensor) -> Tensor:
        pos = torch.arange(item_seq.shape[1], device=item_seq.device).unsqueeze(0)
        weight = ((pos < seq_len.unsqueeze(1)).float() * (pos + 1).float()).unsqueeze(-1)
        return self.proj((self.emb(item_seq) * weight).sum(1) / weight.sum(1))


class NewsUser(nn.Module):
    """Additive attention over the history's news vectors."""

    def __init__(self, dim: int):
        super().__init__()
        self.att = nn.Linear(dim, dim)
        self.query = nn.Parameter(torch.randn(dim))

    def forward(self, history_vectors: Tensor, history_mask: Tensor) -> Tensor:
        logits = torch.tanh(self.att(history_vectors)) @ self.query
        logits = logits.masked_fill(history_mask == 0, -1e9)
        weights = torch.softmax(logits, dim=-1) * history_mask
        return (weights.unsqueeze(-1) * history_vectors).sum(1)


class IdUsers(nn.Module):
    def __init__(self, n: int, dim: int):
        super().__init__()
        self.emb = nn.Embedding(n + 1, dim, padding_idx=0)

    def forward(self, user_idx: Tensor) -> Tensor:
        return self.emb(user_idx)


class OuterCnn(nn.Module):
    """ConvNCF-like: outer product map -> conv -> pool -> linear."""

    def __init__(self, dim: int):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, kernel_size=2, stride=2)
        self.out = nn.Linear(4, 1)

    def forward(self, user: Tensor, items: Tensor) -> Tensor:
        outer = user.unsqueeze(1).unsqueeze(-1) * items.unsqueeze(2)  # [B, K, D, D]
        maps = torch.relu(self.conv(outer.reshape(-1, 1, outer.shape[-2], outer.shape[-1])))
        return self.out(maps.mean(dim=(2, 3))).reshape(user.shape[0], -1)


@dataclass
class TinyModel:
    """A built bundle and the torch modules it was traced from."""

    name: str
    version: str
    path: Path
    items: list[str]
    item_encoder: nn.Module
    user_encoder: nn.Module
    scorer: nn.Module
    item_inputs: dict[str, np.ndarray]
    users: list[str] = field(default_factory=list)
    histories: dict[str, list[str]] = field(default_factory=dict)
    titles: dict[str, str] = field(default_factory=dict)
    vocab: dict[str, int] = field(default_factory=dict)
    fallback: list[str] = field(default_factory=list)  # the bundle's fallback ranking, best first

    @torch.no_grad()
    def item_matrix(self) -> Tensor:
        """[n + 1, D], row 0 zeros (padding)."""
        vectors = self.item_encoder(*[torch.from_numpy(v) for v in self.item_inputs.values()])
        return torch.cat([torch.zeros(1, vectors.shape[1]), vectors])

    @torch.no_grad()
    def encode_titles(self, titles: list[str]) -> Tensor:
        tokens = torch.zeros(len(titles), TITLE_SIZE, dtype=torch.long)
        for row, title in enumerate(titles):
            ids = [self.vocab.get(w, 0) for w in title.lower().split()[:TITLE_SIZE]]
            tokens[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        return self.item_encoder(tokens)

    @torch.no_grad()
    def expected_user(self, history: list[str] | None = None, user_id: str | None = None,
                      matrix: Tensor | None = None) -> Tensor:
        """The user vector [D] as torch computes it, from unpadded inputs (history: known ids, last 5 used)."""
        if isinstance(self.user_encoder, IdUsers):
            return self.user_encoder(torch.tensor([self.users.index(user_id) + 1]))[0]
        index = {item: i for i, item in enumerate(self.items, start=1)}
        known = [index[i] for i in history if i in index][-MAX_HISTORY:]
        if isinstance(self.user_encoder, NewsUser):
            matrix = self.item_matrix() if matrix is None else matrix
            vectors = matrix[known].unsqueeze(0) if known else torch.zeros(1, 1, DIM)
            mask = torch.ones(1, len(known)) if known else torch.zeros(1, 1)
            return self.user_encoder(vectors, mask)[0]
        return self.user_encoder(torch.tensor([known]), torch.tensor([len(known)]))[0]

    @torch.no_grad()
    def expected_scores(self, user: Tensor, item_vectors: Tensor) -> np.ndarray:
        """Scores [K] by the traced scorer module itself."""
        return self.scorer(user.unsqueeze(0), item_vectors.unsqueeze(0))[0].numpy()


def _export(module: nn.Module, args: tuple, names: list[str], output: str, axes: dict) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), args, buffer, input_names=names, output_names=[output],
                          dynamic_axes=axes, opset_version=17, dynamo=False)
    return buffer.getvalue()


def _io(names_dtypes: list[tuple[str, str, list]]) -> list[dict]:
    return [{"name": n, "dtype": d, "shape": s} for n, d, s in names_dtypes]


def build(root: Path, name: str, version: str = "20260101T000000Z-00000001", seed: int = 0) -> TinyModel:
    """Write ARTIFACTS/<name>/<version>/ and point LATEST at it; returns the reference model."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    prefix = "N" if name == "nrms" else "i"
    items = [f"{prefix}{i}" for i in range(1, N_ITEMS + 1)]
    users = [f"u{i}" for i in range(1, N_USERS + 1)]
    histories = {u: rng.sample(items, rng.randint(2, 8)) for u in users}
    scorer_in = ([torch.randn(2, DIM), torch.randn(2, 3, DIM)], ["user", "items"])
    scorer_axes = {"user": {0: "batch"}, "items": {0: "batch", 1: "candidates"}, "scores": {0: "batch", 1: "candidates"}}
    tokenizer = None
    model = TinyModel(name, version, root / name / version, items, None, None, None, {})
    if name == "nrms":
        model.vocab = {w: i for i, w in enumerate(WORDS, start=1)}
        model.titles = {i: " ".join(rng.choices(WORDS, k=rng.randint(2, TITLE_SIZE + 2))) for i in items}
        tokens = np.zeros((N_ITEMS, TITLE_SIZE), dtype=np.int64)
        for row, item in enumerate(items):
            ids = [model.vocab[w] for w in model.titles[item].split()[:TITLE_SIZE]]
            tokens[row, : len(ids)] = ids
        model.item_inputs = {"title_tokens": tokens}
        model.item_encoder, model.user_encoder, model.scorer = TitleItems(len(WORDS), DIM), NewsUser(DIM), DotScorer(sigmoid=True)
        user_in = ([torch.randn(2, MAX_HISTORY, DIM), torch.ones(2, MAX_HISTORY)], ["history_vectors", "history_mask"])
        user_axes = {"history_vectors": {0: "batch", 1: "history"}, "history_mask": {0: "batch", 1: "history"}}
        tokenizer = {"type": "word-regex", "pattern": r"[\w]+|[.,!?;|]", "lowercase": True,
                     "title_size": TITLE_SIZE, "vocab": model.vocab}
        meta = {"score": "probability", "scorer": "dot_sigmoid", "user_input": "news_vectors"}
    else:
        model.item_inputs = {"item_idx": np.arange(1, N_ITEMS + 1, dtype=np.int64)}
        model.item_encoder = IdItems(N_ITEMS, DIM)
        if name == "convncf":
            model.user_encoder, model.scorer = IdUsers(N_USERS, DIM), OuterCnn(DIM)
            user_in, user_axes = ([torch.tensor([1, 2])], ["user_idx"]), {"user_idx": {0: "batch"}}
            meta = {"score": "raw", "scorer": "pairwise", "user_input": "user_id"}
            histories = None
        else:
            model.user_encoder = GruUser(N_ITEMS, DIM) if name == "gru4recf" else MeanUser(N_ITEMS, DIM)
            model.scorer = DotScorer()
            user_in = ([torch.randint(1, N_ITEMS, (2, MAX_HISTORY)), torch.tensor([3, MAX_HISTORY])], ["item_seq", "seq_len"])
            user_axes = {"item_seq": {0: "batch", 1: "length"}, "seq_len": {0: "batch"}}
            meta = {"score": "raw", "scorer": "dot", "user_input": "sequence"}
    model.users, model.histories = users, histories or {}
    # A fallback listing a third of the catalog, so some /rank candidates are not in it.
    model.fallback = rng.sample(items, N_ITEMS // 3)
    meta["fallback"] = "recency_popularity" if name == "nrms" else "popularity"
    (in_name,) = model.item_inputs
    example = torch.from_numpy(model.item_inputs[in_name][:3])
    files = {
        "item_encoder.onnx": _export(model.item_encoder, (example,), [in_name], "item_vectors",
                                     {in_name: {0: "items"}, "item_vectors": {0: "items"}}),
        "user_encoder.onnx": _export(model.user_encoder, tuple(user_in[0]), user_in[1], "user_vectors",
                                     {**user_axes, "user_vectors": {0: "batch"}}),
        "scorer.onnx": _export(model.scorer, tuple(scorer_in[0]), scorer_in[1], "scores", scorer_axes),
    }
    model.path.mkdir(parents=True, exist_ok=True)
    for n, b in files.items():
        (model.path / n).write_bytes(b)
    # Every table of a few hundred bytes leaves its graph, as a large catalog's do at export (EXTERNAL_MIN_BYTES):
    # the service tests serve through mapped graph weights; tests/training's exports keep theirs inline.
    weights = {n.removesuffix(".onnx"): externalize(model.path / n, min_bytes=256) for n in files}
    # The data files as the exporter writes them (bundle/data.py), the item vectors by the torch module.
    write_data_files(BundleData(items, model.item_inputs, MAX_HISTORY, users if name == "convncf" else None,
                                histories, tokenizer if name == "nrms" else None,
                                np.array([items.index(i) + 1 for i in model.fallback]), meta["fallback"]), model.path)
    write_item_vectors(model.path, model.item_matrix()[1:].numpy())
    index = build_index(model.item_matrix().numpy(), model.path / INDEX_FILE, threads=1)
    manifest = {
        "format": FORMAT, "name": name, "model": name, "version": version,
        "created_at": "2026-01-01T00:00:00Z", "dim": DIM, **meta, "max_history": MAX_HISTORY,
        "n_items": N_ITEMS, "config": {"seed": seed}, "metrics": {"test": {"ndcg@10": 0.1 + seed / 100}},
        "graphs": {
            "item_encoder": {"file": "item_encoder.onnx", "inputs": _io([(in_name, "int64", ["items"])]),
                             "outputs": _io([("item_vectors", "float32", ["items", DIM])])},
            "user_encoder": {"file": "user_encoder.onnx", "inputs": [{"name": n} for n in user_in[1]],
                             "outputs": _io([("user_vectors", "float32", ["batch", DIM])])},
            "scorer": {"file": "scorer.onnx", "inputs": _io([("user", "float32", ["batch", DIM]),
                                                             ("items", "float32", ["batch", "candidates", DIM])]),
                       "outputs": _io([("scores", "float32", ["batch", "candidates"])])},
        },
        "index": index,
        "files": {p.name: sha256_file(p) for p in sorted(model.path.iterdir())},
    }
    for graph, moved in weights.items():
        if moved:
            manifest["graphs"][graph]["weights"] = moved
    (model.path / "manifest.json").write_text(json.dumps(manifest, indent=1))
    (root / name / "LATEST").write_text(version + "\n")
    return model


NAMES = ("nrms", "convncf", "gru4recf", "bert4rec")


def build_all(root: Path, seed: int = 0) -> dict[str, TinyModel]:
    return {name: build(root, name, seed=seed) for name in NAMES}
