"""Leave-one-out split, RecBole's ``split: {LS: valid_and_test}`` with ``order: TO``.

Per user, interactions in time order: the last one is the test target, the one before it the validation
target, the rest train — exactly RecBole's ``_split_index_by_leave_one_out(leave_one_num=2)``: a user with n
interactions leaves ``min(2, n - 1)`` out, so n = 2 gives one training interaction and a test target (no
validation target) and n = 1 gives a training interaction only.

Each phase's ``EvalSet`` stores, as CSR, every interaction of the user before its target, oldest first:

- valid: the user's training items;
- test: the training items plus the validation item.

That one CSR is both the sequential models' input history and the set of items to exclude from full-sort
ranking: the items the user is known to have seen before the target. RecBole excludes them for general
models such as ConvNCF; its sequential models (GRU4RecF, BERT4Rec) run with `repeatable: True` and rank the
seen items too. We exclude them for every model (a recommender should not re-suggest what was consumed);
bench/train_vs_recbole.py also scores our models RecBole's way so the figures compare.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.data.atomic import InteractionData


@dataclass
class EvalSet:
    user: np.ndarray            # int64 [U] users with a target in this phase, ascending
    target: np.ndarray          # int64 [U] the held-out item of each
    history_indptr: np.ndarray  # int64 [U + 1] row r's history is history_items[indptr[r]:indptr[r + 1]]
    history_items: np.ndarray   # int64 [nnz] every item before the target, oldest first

    def __len__(self) -> int:
        return len(self.user)

    def history(self, row: int) -> np.ndarray:
        """Row ``row``'s history (also its full-sort exclusions), oldest first."""
        return self.history_items[self.history_indptr[row] : self.history_indptr[row + 1]]


@dataclass
class Split:
    train_user: np.ndarray      # int64 [n_train] grouped by user (ascending), time order within a user
    train_item: np.ndarray      # int64 [n_train]
    valid: EvalSet
    test: EvalSet


def _eval_set(user: np.ndarray, item: np.ndarray, position: np.ndarray, length: np.ndarray,
              from_end: int) -> EvalSet:
    """The phase whose target is the ``from_end``-th interaction from a user's end (1 = last)."""
    has_target = length >= from_end + 1          # someone must stay in train
    is_target = has_target & (position == length - from_end)
    in_history = has_target & (position < length - from_end)
    counts = (length - from_end)[is_target]      # history size = target position
    return EvalSet(user=user[is_target], target=item[is_target],
                   history_indptr=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
                   history_items=item[in_history])


def leave_one_out(data: InteractionData) -> Split:
    """Split every user's time-ordered interactions into train, validation target and test target."""
    order = np.argsort(data.timestamp, kind="stable")          # identity for read_atomic's output
    order = order[np.argsort(data.user[order], kind="stable")]
    user = np.asarray(data.user, dtype=np.int64)[order]
    item = np.asarray(data.item, dtype=np.int64)[order]

    starts = np.flatnonzero(np.r_[True, user[1:] != user[:-1]])
    sizes = np.diff(np.r_[starts, len(user)])
    length = np.repeat(sizes, sizes)                               # the user's interaction count, per row
    position = np.arange(len(user)) - np.repeat(starts, sizes)     # 0-based position within the user

    leave = np.minimum(2, length - 1)
    train = position < length - leave
    return Split(train_user=user[train], train_item=item[train],
                 valid=_eval_set(user, item, position, length, from_end=2),
                 test=_eval_set(user, item, position, length, from_end=1))
