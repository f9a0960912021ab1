"""Sequential model inputs as numpy arrays (the caller makes tensors), built by index arithmetic.

Sequences are left-aligned, oldest first, zero-padded on the right, the way RecBole feeds GRU4Rec(F) and
BERT4Rec: ``item_seq[r, :seq_len[r]]`` are the most recent ``seq_len[r]`` items, oldest first, and
``item_seq[r, seq_len[r] - 1]`` is the latest one.
"""
from __future__ import annotations

import numpy as np


def _windows(items: np.ndarray, ends: np.ndarray, lengths: np.ndarray, max_len: int) -> np.ndarray:
    """Row r = items[ends[r] - lengths[r] : ends[r]] left-aligned in a [R, max_len] zero matrix."""
    starts = ends - lengths
    out = np.zeros((len(ends), max_len), dtype=np.int64)
    for col in range(max_len):               # a loop over columns, never over rows
        rows = np.flatnonzero(lengths > col)
        out[rows, col] = items[starts[rows] + col]
    return out


def left_aligned(items_csr_indptr: np.ndarray, items: np.ndarray, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """The last ``max_len`` items of each CSR row, left-aligned: (item_seq int64 [R, max_len], seq_len int64 [R])."""
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    indptr = np.asarray(items_csr_indptr, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    seq_len = np.minimum(np.diff(indptr), max_len)
    return _windows(items, indptr[1:], seq_len, max_len), seq_len


def _runs(train_user: np.ndarray, train_item: np.ndarray, max_len: int) -> tuple[np.ndarray, ...]:
    """The rows grouped by user, time order kept (a stable sort): (user, item, each user's first row, each
    user's row count), all int64; the inputs checked."""
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    train_user = np.asarray(train_user, dtype=np.int64)
    train_item = np.asarray(train_item, dtype=np.int64)
    if train_user.shape != train_item.shape or train_user.ndim != 1:
        raise ValueError(f"train_user and train_item must be 1-d of one length, got {train_user.shape} "
                         f"and {train_item.shape}")
    order = np.argsort(train_user, kind="stable")
    user, item = train_user[order], train_item[order]
    starts = np.flatnonzero(np.r_[True, user[1:] != user[:-1]]) if len(user) else np.zeros(0, np.int64)
    return user, item, starts, np.diff(np.r_[starts, len(user)])


def prefix_samples(train_user: np.ndarray, train_item: np.ndarray, max_len: int = 50) -> dict[str, np.ndarray]:
    """RecBole's sequential augmentation: one sample per prefix of each user's training sequence.

    For every position i >= 1 of a user's time-ordered training items: ``item_seq`` = the items before i (the
    last ``max_len`` of them, left-aligned), ``seq_len``, ``target`` = the item at i, ``user``. Rows of the same
    user must be in time order; users need not be contiguous (a stable sort groups them). Samples come out
    grouped by user (ascending), positions ascending. All arrays int64.
    """
    user, item, starts, sizes = _runs(train_user, train_item, max_len)
    position = np.arange(len(user)) - np.repeat(starts, sizes)
    sample = np.flatnonzero(position >= 1)     # each sample's target row; its history ends just before it
    seq_len = np.minimum(position[sample], max_len)
    return {
        "user": user[sample],
        "item_seq": _windows(item, sample, seq_len, max_len),
        "seq_len": seq_len,
        "target": item[sample],
    }


def window_samples(train_user: np.ndarray, train_item: np.ndarray, max_len: int = 50) -> dict[str, np.ndarray]:
    """One sample per window of up to ``max_len + 1`` consecutive training items of a user (train_mode window).

    Windows are cut from the end of each user's time-ordered sequence, consecutive ones sharing one item, so
    every item after a user's first is the target of exactly one window position: a window stands for the
    prefix samples of its ``targets = seq_len - 1`` items after the first. A user with at most ``max_len + 1``
    training items is one window, the whole sequence; a causal model's next-item loss over it is then exactly
    the loss of the user's prefix samples (``prefix_samples``), computed in one pass. Longer sequences give
    windows whose first positions see less history than their prefix samples would (at most max_len).

    ``item_seq`` [R, max_len + 1] left-aligned, ``seq_len`` (items in the window), ``targets``, ``user``; all
    int64, grouped by user (ascending), the latest window of a user first.
    """
    user, item, starts, sizes = _runs(train_user, train_item, max_len)
    windows = np.where(sizes >= 2, -(-(sizes - 1) // max_len), 0)
    owner = np.repeat(np.arange(len(starts)), windows)                      # each window's user (its run)
    from_end = np.arange(len(owner)) - np.repeat(np.cumsum(windows) - windows, windows)
    ends = starts[owner] + sizes[owner] - from_end * max_len                 # exclusive
    seq_len = np.minimum(ends - starts[owner], max_len + 1)
    return {
        "user": user[starts[owner]],
        "item_seq": _windows(item, ends, seq_len, max_len + 1),
        "seq_len": seq_len,
        "targets": seq_len - 1,
    }
