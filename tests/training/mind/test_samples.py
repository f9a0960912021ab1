import time

import numpy as np
import pytest

from training.data.mind import Impressions, click_counts, history_matrix, read_behaviors, read_news, train_samples

from .conftest import write


def make_imps(histories, impressions):
    """impressions: list of [(news index, label), ...]."""
    def csr(rows):
        ptr = np.zeros(len(rows) + 1, dtype=np.int64)
        ptr[1:] = np.cumsum([len(r) for r in rows])
        return ptr
    n = len(impressions)
    return Impressions(
        impression_id=[str(i) for i in range(n)], user_id=[f"U{i}" for i in range(n)],
        time=np.zeros(n, dtype="datetime64[s]"),
        history_indptr=csr(histories), history_items=np.array([x for h in histories for x in h], dtype=np.int64),
        cand_indptr=csr(impressions),
        cand_items=np.array([c for imp in impressions for c, _ in imp], dtype=np.int64),
        cand_labels=np.array([y for imp in impressions for _, y in imp], dtype=np.int64),
    )


def test_history_matrix_keeps_last_items_left_aligned():
    imps = make_imps([[1, 2, 3, 4, 5], [], [7, 8]], [[(1, 1)], [(2, 1)], [(3, 1)]])
    hist, lens = history_matrix(imps, 3)
    assert hist.dtype == np.int64 and lens.dtype == np.int64
    assert hist.tolist() == [[3, 4, 5], [0, 0, 0], [7, 8, 0]]
    assert lens.tolist() == [3, 0, 2]


def test_train_samples_clicked_first_and_negatives_from_same_impression():
    imps = make_imps(
        [[1, 2], [3], [4, 5, 6]],
        [[(10, 1), (11, 0), (12, 0), (13, 0), (14, 0), (15, 1), (16, 0)],   # 2 clicks, 5 negatives
         [(20, 0), (21, 1), (22, 0), (23, 0), (24, 0), (25, 0)],            # 1 click, 5 negatives
         [(30, 1), (31, 0)]],                                               # 1 negative < npratio
    )
    s = train_samples(imps, npratio=4, his_size=2, rng=np.random.default_rng(0))
    assert set(s) == {"history", "history_len", "candidates"}
    assert s["candidates"].shape == (4, 5) and s["candidates"].dtype == np.int64
    assert s["candidates"][:, 0].tolist() == [10, 15, 21, 30]
    negs = {0: {11, 12, 13, 14, 16}, 1: {20, 22, 23, 24, 25}, 2: {31}}
    for row, imp in zip(s["candidates"], [0, 0, 1, 2]):
        assert set(row[1:].tolist()) <= negs[imp]
    # enough negatives: drawn without replacement; too few: with replacement
    assert all(len(set(r[1:].tolist())) == 4 for r in s["candidates"][:3])
    assert s["candidates"][3, 1:].tolist() == [31, 31, 31, 31]
    assert s["history"].tolist() == [[1, 2], [1, 2], [3, 0], [5, 6]]
    assert s["history_len"].tolist() == [2, 2, 1, 2]


def test_with_replacement_uses_every_negative_when_fewer_than_npratio():
    imps = make_imps([[1]], [[(1, 1), (2, 0), (3, 0)]])
    for seed in range(5):
        row = train_samples(imps, 4, 3, np.random.default_rng(seed))["candidates"][0]
        assert row[0] == 1 and {2, 3} <= set(row[1:].tolist()) <= {2, 3}


def test_clicks_without_negatives_are_skipped_and_counted():
    imps = make_imps([[1], [2]], [[(5, 1), (6, 1)], [(7, 1), (8, 0)]])
    s = train_samples(imps, 2, 3, np.random.default_rng(0))
    assert s["candidates"][:, 0].tolist() == [7]
    assert click_counts(imps) == {"clicks": 3, "usable": 1, "skipped": 2}


def test_fresh_negatives_each_call_and_reproducible_per_seed():
    imps = make_imps([[1]] * 50, [[(100, 1)] + [(i, 0) for i in range(1, 30)]] * 50)
    rng = np.random.default_rng(3)
    a = train_samples(imps, 4, 5, rng)["candidates"]
    b = train_samples(imps, 4, 5, rng)["candidates"]
    assert not np.array_equal(a, b)
    again = train_samples(imps, 4, 5, np.random.default_rng(3))["candidates"]
    assert np.array_equal(a, again)


def test_negatives_are_uniform_over_the_impression():
    imps = make_imps([[1]] * 2000, [[(100, 1)] + [(i, 0) for i in range(1, 7)]] * 2000)
    negs = train_samples(imps, 3, 5, np.random.default_rng(0))["candidates"][:, 1:]
    counts = np.bincount(negs.ravel(), minlength=7)[1:]
    assert np.all(np.abs(counts / counts.sum() - 1 / 6) < 0.02)
    # and no position bias among negative columns
    assert np.all(np.abs(np.array([np.mean(negs[:, j] == 6) for j in range(3)]) - 1 / 6) < 0.03)


def test_train_samples_is_fast_on_4000_impressions():
    rng = np.random.default_rng(0)
    impressions = []
    for _ in range(4000):
        m = int(rng.integers(5, 60))
        labels = np.zeros(m, dtype=int)
        labels[rng.choice(m, int(rng.integers(1, 3)), replace=False)] = 1
        impressions.append(list(zip(rng.integers(1, 50000, m).tolist(), labels.tolist())))
    imps = make_imps([rng.integers(1, 50000, int(rng.integers(0, 80))).tolist() for _ in range(4000)], impressions)
    start = time.perf_counter()
    s = train_samples(imps, 4, 50, rng)
    assert time.perf_counter() - start < 0.5
    assert len(s["candidates"]) == click_counts(imps)["usable"]


def test_bad_arguments(tmp_path):
    imps = make_imps([[1]], [[(1, 1), (2, 0)]])
    with pytest.raises(ValueError):
        train_samples(imps, 0, 5, np.random.default_rng(0))
    with pytest.raises(ValueError):
        history_matrix(imps, 0)


def test_select_keeps_rows_consistent(tmp_path, news_path):
    news, _ = read_news(news_path)
    path = write(tmp_path / "b.tsv", [
        "1\tU1\t11/13/2019 8:36:57 AM\tN3 N1\tN2-1 N4-0",
        "2\tU2\t11/12/2019 8:36:57 AM\t\tN5-1",
        "3\tU3\t11/11/2019 8:36:57 AM\tN6\tN1-0 N2-0 N3-1",
    ])
    sub = read_behaviors(path, news).select(np.array([2, 0]))
    assert sub.impression_id == ["3", "1"]
    assert sub.history_items.tolist() == [6, 3, 1] and sub.history_indptr.tolist() == [0, 1, 3]
    assert sub.cand_items.tolist() == [1, 2, 3, 2, 4] and sub.cand_labels.tolist() == [0, 0, 1, 1, 0]
