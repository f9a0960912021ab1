"""The one contract every model implements.

A model is three sub-modules plus a loss, the way NRMS splits its news encoder, user encoder and scorer:

    item_encoder : item inputs                        -> item vectors [N, D]
    user_encoder : user inputs                        -> user vectors [B, D]
    scorer       : (user [B, D], items [B, K, D])     -> scores [B, K]

Training calls only `compute_loss`; evaluation calls `user_vectors` and `full_sort_scores`; export reads
`onnx_parts` to trace each sub-module on its own.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bundle.contract import SCORE_MEANING


@dataclass
class OnnxPart:
    """How to trace one sub-module: example inputs with their names and dynamic axes."""

    module: nn.Module
    inputs: dict[str, Tensor]
    output: str
    dynamic_axes: dict[str, dict[int, str]] = field(default_factory=dict)


class DotScorer(nn.Module):
    """score = <user, item>; optionally squashed to a probability."""

    def __init__(self, sigmoid: bool = False):
        super().__init__()
        self.sigmoid = sigmoid

    def forward(self, user: Tensor, items: Tensor) -> Tensor:
        scores = torch.einsum("bd,bkd->bk", user, items)
        return torch.sigmoid(scores) if self.sigmoid else scores


class RecModel(nn.Module):
    """Base class. Subclasses set `item_encoder`, `user_encoder`, `scorer` and implement the methods below."""

    kind: str = ""
    # What the user encoder takes, in the bundle's words (bundle.contract.USER_INPUTS): "user_id",
    # "sequence" or "news_vectors". It also chooses the training batches and the bundle's user data.
    user_input: str = "sequence"
    # How the scorer scores, in the bundle's words (bundle.contract.SCORERS): "dot", "dot_sigmoid" (a
    # probability) or "pairwise" (only the scorer module can score: no catalog-wide matrix product).
    scorer_kind: str = "dot"

    item_encoder: nn.Module
    user_encoder: nn.Module
    scorer: nn.Module

    @property
    def dot_scorer(self) -> bool:
        """True when a whole catalog can be scored with one matrix product (through a monotone sigmoid)."""
        return self.scorer_kind != "pairwise"

    @property
    def score_meaning(self) -> str:
        """"raw" (an unbounded relevance score) or "probability" (a click probability in [0, 1])."""
        return SCORE_MEANING[self.scorer_kind]

    @property
    def n_items(self) -> int:
        """Catalog size including the padding item 0."""
        return self.cfg.n_items

    @property
    def device(self) -> torch.device:
        """Where the model's parameters are: evaluation puts its inputs there."""
        return next(self.parameters()).device

    def compute_loss(self, batch: dict[str, Tensor]) -> Tensor:
        raise NotImplementedError

    def data_parallel_loss(self, batch: dict[str, Tensor], share: float, world_size: int) -> Tensor:
        """One rank's loss in data-parallel training, where `batch` is its slice (`share` of the samples) of
        a global batch and DDP averages the ranks' gradients: scaled so that this average is the gradient of
        `compute_loss` over the whole global batch. Here `compute_loss` is a mean over the batch's samples,
        so each slice's mean weighs by its share; a model whose loss sums over samples overrides this.
        (BERT4Rec's is a mean over its masked items, whose number per slice varies: close, not exact.)"""
        return self.compute_loss(batch) * (share * world_size)

    def user_vectors(self, batch: dict[str, Tensor]) -> Tensor:
        """User vectors [B, D] from an evaluation batch (the fields named in the model's docstring)."""
        raise NotImplementedError

    def item_vectors(self) -> Tensor:
        """Vectors of the whole catalog [n_items, D], row 0 being the padding item."""
        raise NotImplementedError

    def full_sort_scores(self, user_vectors: Tensor, item_vectors: Tensor | None = None) -> Tensor:
        """Scores of every catalog item for each user [B, n_items]; column 0 (padding) is -inf."""
        items = self.item_vectors() if item_vectors is None else item_vectors
        if self.dot_scorer:
            scores = user_vectors @ items.T
        else:
            scores = self._chunked_scores(user_vectors, items)
        scores[:, 0] = float("-inf")
        return scores

    def _chunked_scores(self, users: Tensor, items: Tensor, pairs: int = 128) -> Tensor:
        """Run a pairwise scorer over every (user, item) pair, about a hundred pairs per call: the
        intermediate maps then stay in CPU cache (ConvNCF's Conv2d stack: 2.2x faster than 512-pair calls)."""
        chunk = max(1, pairs // max(1, users.shape[0]))
        rows = max(1, pairs // chunk)
        out = []
        for u in range(0, users.shape[0], rows):
            part_users = users[u : u + rows]
            row = [self.scorer(part_users, items[i : i + chunk].unsqueeze(0).expand(len(part_users), -1, -1))
                   for i in range(0, items.shape[0], chunk)]
            out.append(torch.cat(row, dim=1))
        return torch.cat(out, dim=0)

    def onnx_parts(self) -> dict[str, OnnxPart]:
        """The three graphs to export, keyed item_encoder, user_encoder, scorer."""
        raise NotImplementedError

    def scorer_part(self, dim: int) -> OnnxPart:
        """The scorer graph: (user [B, D], items [B, K, D]) -> scores [B, K], the same for every model."""
        return OnnxPart(
            module=self.scorer,
            inputs={"user": torch.randn(2, dim), "items": torch.randn(2, 3, dim)},
            output="scores",
            dynamic_axes={"user": {0: "batch"}, "items": {0: "batch", 1: "candidates"}, "scores": {0: "batch", 1: "candidates"}},
        )


def id_part(module: nn.Module, input_name: str, output_name: str, axis: str) -> OnnxPart:
    """An encoder whose only input is a vector of indices (embedding lookups)."""
    return OnnxPart(module, {input_name: torch.tensor([1, 2, 3])}, output_name,
                    {input_name: {0: axis}, output_name: {0: axis}})


def sequence_part(module: nn.Module) -> OnnxPart:
    """A user encoder over left-aligned item-index sequences and their lengths."""
    seq = torch.tensor([[1, 2, 3, 0], [2, 0, 0, 0]])
    return OnnxPart(module, {"item_seq": seq, "seq_len": torch.tensor([3, 1])}, "user_vectors",
                    {"item_seq": {0: "batch", 1: "length"}, "seq_len": {0: "batch"}, "user_vectors": {0: "batch"}})


class NewsRecModel(RecModel):
    """A news model (NRMS, plm_nrms): a user is encoded from the vectors of the news in their history, and
    the catalog's vectors are `encode_news()`'s, row 0 (padding) zeros."""

    def encode_news(self) -> Tensor:
        raise NotImplementedError

    def training_news_vectors(self, news_idx: Tensor) -> Tensor:
        """Vectors [len(news_idx), D] of these news as training sees them (dropout included)."""
        raise NotImplementedError

    def compute_loss(self, batch: dict[str, Tensor]) -> Tensor:
        """Softmax over each click's candidates (the clicked news first) of user . news."""
        history, candidates = batch["history"], batch["candidates"]
        # Encode each distinct news of the batch once, however often it appears.
        unique, inverse = torch.unique(torch.cat([history.flatten(), candidates.flatten()]), return_inverse=True)
        vectors = self.training_news_vectors(unique)
        vectors = vectors * (unique > 0).unsqueeze(1).to(vectors.dtype)  # padding news -> zero vector
        n_hist = history.numel()
        hist_vectors = vectors[inverse[:n_hist]].view(*history.shape, self.dim)
        cand_vectors = vectors[inverse[n_hist:]].view(*candidates.shape, self.dim)
        user = self.user_encoder(hist_vectors, (history > 0).float())
        logits = torch.einsum("bd,bkd->bk", user, cand_vectors)
        return F.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long, device=logits.device))

    def user_vectors(self, batch: dict[str, Tensor], news_vectors: Tensor | None = None) -> Tensor:
        vectors = self.encode_news() if news_vectors is None else news_vectors
        history = batch["history"]
        return self.user_encoder(vectors[history], (history > 0).float())

    def item_vectors(self) -> Tensor:
        return self.encode_news()
