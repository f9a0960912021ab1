"""The data side of the interaction models (ConvNCF, GRU4RecF, BERT4Rec): batches and full-sort evaluation.

Everything is turned into tensors once; an epoch is a permutation plus (ConvNCF) a fresh vectorised draw
of negatives, so no Python loop runs per sample.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from bundle.data import BundleData
from models.base import RecModel
from models.recipe import DatasetMismatch, Recipe
from training.data.atomic import InteractionData, read_atomic
from training.data.errors import DataError
from training.data.sequences import left_aligned, prefix_samples, window_samples
from training.data.split import EvalSet, Split, leave_one_out
from training.evaluate import csr_pairs, rank_metrics, target_ranks
from training.fallback import interaction_popularity

log = logging.getLogger("recserve.train")


def sample_negatives(users: np.ndarray, n_items: int, positive_keys: np.ndarray, rng: np.random.Generator,
                     rounds: int = 20) -> np.ndarray:
    """One uniformly drawn item (index >= 1) per user that is not among the user's positives.

    positive_keys: sorted `user * n_items + item` of the training interactions. Collisions are redrawn, like
    RecBole's uniform sampler; after `rounds` the few left draw from their users' complement directly.
    """
    negatives = rng.integers(1, n_items, size=len(users))
    if len(positive_keys) == 0:
        return negatives
    todo = np.arange(len(users))
    for _ in range(rounds):
        keys = users[todo] * n_items + negatives[todo]
        pos = np.searchsorted(positive_keys, keys).clip(max=len(positive_keys) - 1)
        todo = todo[positive_keys[pos] == keys]
        if len(todo) == 0:
            return negatives
        negatives[todo] = rng.integers(1, n_items, size=len(todo))
    for row in todo:  # the few left (users with nearly every item): draw from what they lack, exactly
        user = int(users[row])
        lo, hi = np.searchsorted(positive_keys, [user * n_items, (user + 1) * n_items])
        free = np.setdiff1d(np.arange(1, n_items), positive_keys[lo:hi] - user * n_items)
        if len(free) == 0:
            raise ValueError(f"user index {user} has interacted with every item: no negative to sample")
        negatives[row] = rng.choice(free)
    return negatives


# Window batches are cut from pools of about this many batches' worth of targets, each pool sorted by window
# length, so a batch holds windows of about one length and is cut to the longest: at a 200-item history about half
# of the positions of a window are padding on ml-1m (docs/benchmarks.md 11). Batches keep their random order.
POOL_BATCHES = 64


def by_length_in_pools(order: np.ndarray, lengths: np.ndarray, targets: np.ndarray, pool_targets: int) -> np.ndarray:
    """`order` (a permutation of windows) with each run of about `pool_targets` targets sorted by window length;
    windows of one length keep their shuffled order."""
    pool = np.cumsum(targets[order]) // pool_targets
    return order[np.lexsort((lengths[order], pool))]


def cut_to_longest(batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """A batch of left-aligned sequences (`item_seq` [B, L], `seq_len`) without the padding columns past its longest
    sequence: the models mask padding, so nothing they compute changes (tests/training/test_train_modes.py)."""
    width = max(int(batch["seq_len"].max()), 1)
    return {**batch, "item_seq": batch["item_seq"][:, :width]}


class InteractionTask:
    """Training batches and evaluation for one interaction model on one leave-one-out split."""

    phases = ("valid", "test")

    def __init__(self, model: RecModel, data: InteractionData, split: Split, max_seq_length: int = 50,
                 eval_batch_size: int = 256):
        self.model, self.data, self.split = model, data, split
        self.max_len, self.eval_batch_size = max_seq_length, eval_batch_size
        self.n_items = len(data.items)
        # A model of user ids learns from (user, positive, negative) triples; a sequence model from the
        # prefixes of each user's history (RecBole's recipe), or with train_mode "window" from windows of it,
        # each standing for the prefix samples of its targets (training/data/sequences.py).
        self.pairwise = model.user_input == "user_id"
        self.window = getattr(model.cfg, "train_mode", "prefix") == "window"
        if self.pairwise:
            self.train_user = torch.from_numpy(split.train_user.astype(np.int64))
            self.train_item = torch.from_numpy(split.train_item.astype(np.int64))
            # Training positives only, as RecBole's training sampler: the held-out items of validation and
            # test may be drawn as negatives, since excluding them would let the split leak into training.
            self.positive_keys = np.unique(self.train_user.numpy() * self.n_items + split.train_item)
            self.size = len(self.train_user)
        else:
            build = window_samples if self.window else prefix_samples
            samples = build(split.train_user, split.train_item, max_len=max_seq_length)
            self.targets = samples.pop("targets", None)  # window: prefix samples per window, what batches count
            self.samples = {k: torch.from_numpy(v.astype(np.int64)) for k, v in samples.items()}
            self.size = len(self.samples["seq_len"])

    def num_batches(self, batch_size: int) -> int:
        """Batches of an epoch; windows fill a batch up to about `batch_size` targets (at most this many
        batches, fewer when a window holds more targets than a batch), so a step sees as many next-item
        targets in either mode."""
        if self.window and not self.pairwise:
            return -(-int(self.targets.sum()) // batch_size)
        return -(-self.size // batch_size)

    def train_batches(self, batch_size: int, rng: np.random.Generator) -> Iterator[dict[str, Tensor]]:
        order = torch.from_numpy(rng.permutation(self.size))
        if self.pairwise:
            users = self.train_user[order]
            negatives = torch.from_numpy(sample_negatives(users.numpy(), self.n_items, self.positive_keys, rng))
            items = self.train_item[order]
            for i in range(0, self.size, batch_size):
                sl = slice(i, i + batch_size)
                yield {"user": users[sl], "pos_item": items[sl], "neg_item": negatives[sl]}
        elif self.window:
            order = by_length_in_pools(order.numpy(), self.samples["seq_len"].numpy(), self.targets,
                                       POOL_BATCHES * batch_size)
            counts = self.targets[order]
            batch_of = (np.cumsum(counts) - counts) // batch_size  # a window joins the batch its first target falls in
            batches = np.split(order, np.flatnonzero(np.diff(batch_of)) + 1)
            for b in rng.permutation(len(batches)):
                yield cut_to_longest({k: v[batches[b]] for k, v in self.samples.items()})
        else:
            for i in range(0, self.size, batch_size):
                idx = order[i : i + batch_size]
                yield {k: v[idx] for k, v in self.samples.items()}

    def eval_inputs(self, phase: str) -> dict[str, Tensor]:
        """The user encoder's inputs for every user of a phase (`valid` or `test`)."""
        part: EvalSet = getattr(self.split, phase)
        if self.pairwise:
            return {"user": torch.from_numpy(part.user.astype(np.int64))}
        seq, length = left_aligned(part.history_indptr, part.history_items, self.max_len)
        return {"item_seq": torch.from_numpy(seq), "seq_len": torch.from_numpy(length)}

    @torch.no_grad()
    def evaluate(self, phase: str, ks: tuple[int, ...] = (10,)) -> dict[str, float]:
        """Full-sort metrics of a phase, each user's known items (its history) excluded from the ranking."""
        part: EvalSet = getattr(self.split, phase)
        inputs, device = self.eval_inputs(phase), self.model.device
        items = self.model.item_vectors()
        targets = torch.from_numpy(part.target.astype(np.int64))
        # Sequences go shortest first, each batch cut to its longest history (metrics are means: order-free).
        order = np.arange(len(targets)) if self.pairwise else np.argsort(inputs["seq_len"].numpy(), kind="stable")
        ranks = []
        for start in range(0, len(targets), self.eval_batch_size):
            rows = order[start : start + self.eval_batch_size]
            batch = {k: v[rows] for k, v in inputs.items()}
            users = self.model.user_vectors({k: v.to(device) for k, v in
                                             (batch if self.pairwise else cut_to_longest(batch)).items()})
            scores = self.model.full_sort_scores(users, items)
            ex_rows, ex_items = csr_pairs(part.history_indptr, part.history_items, rows)
            ranks.append(target_ranks(scores, targets[rows], ex_rows, ex_items).cpu())
        return rank_metrics(torch.cat(ranks).numpy(), ks)


def histories(data: InteractionData) -> dict[str, list[str]]:
    """Every user's items, oldest first (interactions are sorted by user, then time)."""
    bounds = np.flatnonzero(np.diff(data.user)) + 1
    starts = np.concatenate([[0], bounds])
    ids = np.asarray(data.items.ids, dtype=object)
    return {data.users.ids[data.user[s]]: ids[chunk].tolist()
            for s, chunk in zip(starts, np.split(data.item, bounds))}


def interaction_counts(data: InteractionData) -> np.ndarray:
    """Each user's number of interactions (after the filters)."""
    return np.bincount(data.user, minlength=len(data.users))[1:]


def filter_hint(opts) -> str:
    """What the filters can and cannot do about users with too few interactions."""
    hint = "--k-core cannot help (it only drops users and items with fewer interactions)"
    if opts.min_rating is not None:
        hint += f"; --min-rating {opts.min_rating:g} dropped the interactions rated lower: a lower one, or none, keeps more"
    return hint


def require_validation_targets(data: InteractionData, split: Split, inter_path: Path, opts) -> None:
    """Refuse data whose leave-one-out split has nobody to validate on. A user needs 3 interactions to have a
    validation target (the last is the test target, the one before the validation target); users with fewer
    only drop out of validation (2: train + test) or of both phases (1), which is fine while some remain,
    but with none left evaluation has nothing to score (it failed deep in torch.cat)."""
    if len(split.valid):
        return
    counts = interaction_counts(data)
    raise DataError(inter_path, None,
                    f"no user has the 3 or more interactions the leave-one-out split needs to hold out a "
                    f"validation and a test target (of {len(counts)} users: {(counts == 2).sum()} with 2, "
                    f"{(counts == 1).sum()} with 1), so nothing is left to validate on; the data needs users with "
                    f"at least 3 interactions each, and more to train on; {filter_hint(opts)}")


def no_sequences_problem(kind: str, data: InteractionData, opts) -> str:
    """Why a sequence model has no training sample: it learns to predict each training item from the ones
    before it, so a user needs 2 training items, which is 4 interactions with the 2 targets held out."""
    counts = interaction_counts(data)
    return (f"{kind} learns from the order of each user's training items, and no user has the 4 or more "
            f"interactions that leave 2 of them besides the validation and test targets (of {len(counts)} "
            f"users: {(counts == 3).sum()} with 3, none with more), so nothing is left to train on; the data needs "
            f"users with at least 4 interactions; {filter_hint(opts)}")


def data_summary(data: InteractionData, split: Split) -> str:
    """One line on what training is about to see (a large dataset is quiet for seconds before the first batch)."""
    features = ", ".join(f"{f} ({len(data.feature_vocabs[f]) - 1:,} values)" for f in data.item_features) or "none"
    return (f"{data.name}: {len(data.users) - 1:,} users, {len(data.items) - 1:,} items, {len(data.user):,} "
            f"interactions; split: {len(split.train_item):,} train, {len(split.valid):,} valid and "
            f"{len(split.test):,} test targets; item features: {features}")


def prepare_interactions(recipe: Recipe, data_dir, opts) -> tuple[RecModel, InteractionTask, BundleData]:
    """Read RecBole atomic files, split them, build the recipe's model and the bundle data it will ship:
    the user id map for a model of user ids, the users' histories for a model of sequences, and the
    fallback ranking for users it cannot score (training interactions only: no validation or test target)."""
    data = read_atomic(data_dir, min_rating=opts.min_rating, k_core=opts.k_core)
    inter_path = Path(data_dir) / f"{data.name}.inter"
    split = leave_one_out(data)
    require_validation_targets(data, split, inter_path, opts)
    log.info("%s", data_summary(data, split))
    try:
        config = recipe.build_config(data, opts)
    except DatasetMismatch as err:
        raise DataError(Path(data_dir) / f"{data.name}{err.file_suffix}", None, str(err)) from None
    model = recipe.model(config)
    recipe.attach(model, data, opts)
    task = InteractionTask(model, data, split, max_seq_length=opts.max_seq_length)
    if task.size == 0:
        raise DataError(inter_path, None, no_sequences_problem(recipe.kind, data, opts))
    by_id = model.user_input == "user_id"
    bundle = BundleData(
        items=data.items.ids[1:],
        item_inputs={"item_idx": np.arange(1, len(data.items), dtype=np.int64)},
        max_history=opts.max_seq_length,
        users=data.users.ids[1:] if by_id else None,
        histories=None if by_id else histories(data),
        fallback=interaction_popularity(split.train_item, len(data.items)),
        fallback_kind="popularity",
        data_fingerprint=data.fingerprint,
    )
    return model, task, bundle
