"""left_aligned and prefix_samples: a hand-built example and a slow reference loop on random data."""
from __future__ import annotations

import numpy as np
import pytest

from training.data.sequences import left_aligned, prefix_samples


def test_left_aligned_by_hand():
    indptr = np.array([0, 3, 3, 8, 9])
    items = np.array([1, 2, 3, 4, 5, 6, 7, 8, 9])
    seq, length = left_aligned(indptr, items, max_len=4)
    assert seq.tolist() == [[1, 2, 3, 0], [0, 0, 0, 0], [5, 6, 7, 8], [9, 0, 0, 0]]
    assert length.tolist() == [3, 0, 4, 1]
    assert seq.dtype == length.dtype == np.int64
    seq, length = left_aligned(np.array([0]), np.array([], dtype=np.int64), 3)
    assert seq.shape == (0, 3) and length.shape == (0,)
    with pytest.raises(ValueError):
        left_aligned(indptr, items, 0)


def test_prefix_samples_by_hand():
    # user 7: items 1 2 3 4; user 3: 9 8; user 5: 6 (no sample). Users interleaved, time order within each.
    user = np.array([7, 3, 7, 5, 7, 3, 7])
    item = np.array([1, 9, 2, 6, 3, 8, 4])
    s = prefix_samples(user, item, max_len=2)
    assert s["user"].tolist() == [3, 7, 7, 7]
    assert s["target"].tolist() == [8, 2, 3, 4]
    assert s["item_seq"].tolist() == [[9, 0], [1, 0], [1, 2], [2, 3]]
    assert s["seq_len"].tolist() == [1, 1, 2, 2]
    assert all(v.dtype == np.int64 for v in s.values())
    empty = prefix_samples(np.array([], np.int64), np.array([], np.int64), max_len=3)
    assert empty["item_seq"].shape == (0, 3) and len(empty["target"]) == 0


def reference_samples(user, item, max_len):
    out = {"user": [], "item_seq": [], "seq_len": [], "target": []}
    for u in sorted(set(user)):
        seq = [i for uu, i in zip(user, item) if uu == u]
        for pos in range(1, len(seq)):
            history = seq[max(0, pos - max_len):pos]
            out["user"].append(u)
            out["item_seq"].append(history + [0] * (max_len - len(history)))
            out["seq_len"].append(len(history))
            out["target"].append(seq[pos])
    return out


@pytest.mark.parametrize("max_len", [1, 3, 50])
def test_prefix_samples_match_reference(max_len):
    rng = np.random.default_rng(max_len)
    user = rng.integers(1, 40, 1500)
    item = rng.integers(1, 200, 1500)
    got = prefix_samples(user, item, max_len=max_len)
    expected = reference_samples(user.tolist(), item.tolist(), max_len)
    for key, value in expected.items():
        assert got[key].tolist() == value, key


def test_left_aligned_matches_reference():
    rng = np.random.default_rng(1)
    lengths = rng.integers(0, 12, 200)
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    items = rng.integers(1, 99, indptr[-1])
    seq, length = left_aligned(indptr, items, max_len=5)
    for r in range(200):
        row = items[indptr[r]:indptr[r + 1]].tolist()[-5:]
        assert seq[r].tolist() == row + [0] * (5 - len(row)) and length[r] == len(row)
