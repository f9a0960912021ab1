"""leave_one_out: RecBole's LS valid_and_test with order TO, checked by hand and against a reference."""
from __future__ import annotations

import numpy as np

from training.data.atomic import InteractionData, Vocab
from training.data.split import leave_one_out


def make_data(user, item, timestamp=None) -> InteractionData:
    user = np.asarray(user, dtype=np.int64)
    item = np.asarray(item, dtype=np.int64)
    ts = np.arange(len(user), dtype=np.float64) if timestamp is None else np.asarray(timestamp, np.float64)
    n_users, n_items = int(user.max()), int(item.max())
    return InteractionData(name="t", users=Vocab.from_ids([f"u{i}" for i in range(1, n_users + 1)]),
                           items=Vocab.from_ids([f"i{i}" for i in range(1, n_items + 1)]),
                           user=user, item=item, timestamp=ts, rating=None)


def csr_rows(indptr, items):
    return [items[indptr[r]:indptr[r + 1]].tolist() for r in range(len(indptr) - 1)]


def test_hand_built_example():
    # user 1: 5 interactions; user 2: 3; user 3: 2 (train + test); user 4: 1 (train only)
    data = make_data(user=[1, 1, 1, 1, 1, 2, 2, 2, 3, 3, 4],
                     item=[10, 11, 12, 13, 14, 20, 21, 22, 30, 31, 40])
    split = leave_one_out(data)
    assert split.train_user.tolist() == [1, 1, 1, 2, 3, 4]
    assert split.train_item.tolist() == [10, 11, 12, 20, 30, 40]

    assert split.valid.user.tolist() == [1, 2] and split.valid.target.tolist() == [13, 21]
    assert csr_rows(split.valid.history_indptr, split.valid.history_items) == [[10, 11, 12], [20]]

    assert split.test.user.tolist() == [1, 2, 3] and split.test.target.tolist() == [14, 22, 31]
    assert csr_rows(split.test.history_indptr, split.test.history_items) == [[10, 11, 12, 13], [20, 21], [30]]
    assert split.test.history(0).tolist() == [10, 11, 12, 13] and len(split.test) == 3

    for part in (split.valid, split.test):
        for arr in (part.user, part.target, part.history_indptr, part.history_items):
            assert arr.dtype == np.int64


def test_time_order_not_file_order_decides():
    # one user, rows given out of time order; ties keep file order
    data = make_data(user=[1, 1, 1, 1], item=[5, 6, 7, 8], timestamp=[30, 10, 20, 20])
    split = leave_one_out(data)
    assert split.train_item.tolist() == [6, 7]
    assert split.valid.target.tolist() == [8] and split.test.target.tolist() == [5]
    assert split.test.history_items.tolist() == [6, 7, 8]


def reference(user, item, timestamp):
    """RecBole's _split_index_by_leave_one_out(leave_one_num=2), transcribed as a loop."""
    train, valid, test = [], {}, {}
    for u in sorted(set(user)):
        rows = sorted((t, r) for r, (uu, t) in enumerate(zip(user, timestamp)) if uu == u)
        seq = [item[r] for _, r in rows]
        leave = min(2, len(seq) - 1)
        pr = len(seq) - leave
        train += [(u, i) for i in seq[:pr]]
        if leave == 2:
            valid[u] = (seq[pr], seq[:pr])
            test[u] = (seq[pr + 1], seq[:pr + 1])
        elif leave == 1:
            test[u] = (seq[pr], seq[:pr])
    return train, valid, test


def test_matches_reference_on_random_data():
    rng = np.random.default_rng(0)
    n = 2000
    user = rng.integers(1, 300, n)
    item = rng.integers(1, 100, n)
    timestamp = rng.integers(0, 50, n).astype(np.float64)  # many ties
    split = leave_one_out(make_data(user, item, timestamp))
    train, valid, test = reference(user.tolist(), item.tolist(), timestamp.tolist())
    assert list(zip(split.train_user.tolist(), split.train_item.tolist())) == train
    for part, expected in ((split.valid, valid), (split.test, test)):
        assert part.user.tolist() == sorted(expected)
        assert part.target.tolist() == [expected[u][0] for u in sorted(expected)]
        assert csr_rows(part.history_indptr, part.history_items) == [expected[u][1] for u in sorted(expected)]
    # every interaction lands in exactly one of train / valid target / test target
    assert len(split.train_user) + len(split.valid.user) + len(split.test.user) == n
