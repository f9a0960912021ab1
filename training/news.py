"""The data side of NRMS: click samples per epoch and MIND impression evaluation (the fast path of the
reference's `run_fast_eval`: encode every news once, users from news vectors, scores by dot product)."""
from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from bundle.data import BundleData
from models.base import RecModel
from models.recipe import Recipe
from training.data.errors import DataError
from training.data.mind import Impressions, MindData, click_counts, history_matrix, read_mind, train_samples
from training.data.word_vectors import load_word_vectors
from training.evaluate import impression_metrics
from training.fallback import recency_popularity
from training.progress import timed

log = logging.getLogger(__name__)


class NewsTask:
    phases = ("valid",)  # MIND's test labels are not public: validation is the held-out measure

    def __init__(self, model: RecModel, data: MindData):
        self.model, self.data = model, data
        self.his_size, self.npratio = model.cfg.his_size, model.cfg.npratio
        self.size = click_counts(data.train)["usable"]

    def num_batches(self, batch_size: int) -> int:
        return -(-self.size // batch_size)

    def train_batches(self, batch_size: int, rng: np.random.Generator) -> Iterator[dict[str, Tensor]]:
        with timed(log, "building this epoch's click samples (fresh negatives)") as notes:
            samples = {k: torch.from_numpy(v)
                       for k, v in train_samples(self.data.train, self.npratio, self.his_size, rng).items()}
            notes.append(f"{len(samples['candidates'])} samples")
        order = torch.from_numpy(rng.permutation(len(samples["candidates"])))
        for i in range(0, len(order), batch_size):
            idx = order[i : i + batch_size]
            yield {k: v[idx] for k, v in samples.items()}

    @torch.no_grad()
    def scores(self, imps: Impressions, batch_size: int = 256) -> list[np.ndarray]:
        """Click probabilities of every impression's candidates (computed on the model's device)."""
        news = self.model.encode_news()
        history, _ = history_matrix(imps, self.his_size)
        history = torch.from_numpy(history).to(news.device)
        users = torch.cat([self.model.user_vectors({"history": history[i : i + batch_size]}, news)
                           for i in range(0, len(history), batch_size)])
        rows = torch.from_numpy(np.repeat(np.arange(len(imps)), np.diff(imps.cand_indptr))).to(news.device)
        cands = torch.from_numpy(imps.cand_items).to(news.device)
        cand_scores = torch.sigmoid((users[rows] * news[cands]).sum(1)).cpu().numpy()
        return np.split(cand_scores, imps.cand_indptr[1:-1])

    def evaluate(self, phase: str) -> dict[str, float]:
        imps: Impressions = getattr(self.data, phase)
        with timed(log, f"evaluating on {len(imps)} {phase} impressions"):
            labels = np.split(imps.cand_labels, imps.cand_indptr[1:-1])
            return impression_metrics(labels, self.scores(imps))


def user_histories(data: MindData) -> dict[str, list[str]]:
    """Each user's clicks as of the end of the data: the history of their latest impression, then the news
    they clicked in their impressions, in time order, without repeats."""
    out: dict[str, list[str]] = {}
    ids = data.news.ids
    for imps in (data.train, data.valid):
        order = np.argsort(imps.time, kind="stable")
        for row in order:
            user = imps.user_id[row]
            start, stop = imps.history_indptr[row], imps.history_indptr[row + 1]
            known = out.setdefault(user, [])
            for idx in imps.history_items[start:stop]:
                if ids[idx] not in known:
                    known.append(ids[idx])
            c0, c1 = imps.cand_indptr[row], imps.cand_indptr[row + 1]
            for idx, label in zip(imps.cand_items[c0:c1], imps.cand_labels[c0:c1]):
                if label and ids[idx] not in known:
                    known.append(ids[idx])
    return out


def require_clicks(imps: Impressions, path: Path, which: str, consequence: str) -> None:
    """NRMS learns from each click against the non-clicked news of its impression, and group AUC scores an
    impression with both: without one such impression an epoch has no batch, or every metric is NaN."""
    if click_counts(imps)["usable"]:
        return
    raise DataError(path, None, f"none of its {len(imps)} {which} impressions has both a clicked and a "
                                f"non-clicked news of news.tsv: {consequence}")


def require_usable_impressions(data: MindData, data_dir: Path, opts) -> None:
    """Both halves of the data need an impression NRMS can use, each reported against its own file."""
    behaviors = Path(data_dir) / "behaviors.tsv"
    require_clicks(data.train, behaviors, "training", "nothing to train on")
    if opts.valid_behaviors is not None:
        require_clicks(data.valid, Path(opts.valid_behaviors), "validation", "nothing to validate on")
    else:
        day = data.valid.time.astype("datetime64[D]").max()
        require_clicks(data.valid, behaviors, f"validation (the last day, {day})",
                       "nothing to validate on; --valid-behaviors can name another behaviors.tsv to validate on")


def prepare_news(recipe: Recipe, data_dir, opts) -> tuple[RecModel, NewsTask, BundleData]:
    """Read MIND files (and word vectors when asked), build the recipe's model and the bundle data: title
    tokens as item inputs, the tokenizer that makes them from new titles, and the users' click histories."""
    data = read_mind(data_dir, valid_behaviors=opts.valid_behaviors)
    require_usable_impressions(data, data_dir, opts)
    if opts.word_vectors:
        with timed(log, f"loading word vectors ({opts.word_vectors}) for {len(data.tokenizer.vocab)} words") as notes:
            data.word_vectors, coverage = load_word_vectors(opts.word_vectors, data.tokenizer.vocab)
            notes.append(f"{coverage:.0%} of the words have one")
    model = recipe.model(recipe.build_config(data, opts))
    recipe.attach(model, data, opts)
    with timed(log, "collecting user histories for the bundle"):
        histories = user_histories(data)
    if recipe.item_text is not None:
        item_inputs, tokenizer = recipe.item_text(model, data, opts)
    else:
        item_inputs, tokenizer = {"title_tokens": data.news.title_tokens[1:]}, data.tokenizer.to_dict()
    bundle = BundleData(
        items=data.news.ids[1:],
        item_inputs=item_inputs,
        max_history=model.cfg.his_size,
        histories=histories,
        tokenizer=tokenizer,
        fallback=recency_popularity(data.train, len(data.news)),
        fallback_kind="recency_popularity",
        data_fingerprint=data.fingerprint,
    )
    return model, NewsTask(model, data), bundle
