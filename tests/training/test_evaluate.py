import math

import numpy as np
import pytest
import torch

from training.data.split import EvalSet
from training.evaluate import (auc, csr_pairs, impression_metrics, mrr, ndcg, popularity_metrics, rank_metrics,
                               target_ranks)


def test_target_rank_excludes_known_items_and_counts_ties_against_the_target():
    scores = torch.tensor([[0.0, 0.9, 0.8, 0.7, 0.6], [0.0, 0.5, 0.5, 0.1, 0.9]])
    targets = torch.tensor([3, 1])
    # user 0 has already seen item 1; user 1 nothing
    ranks = target_ranks(scores, targets, torch.tensor([0]), torch.tensor([1]))
    assert ranks.tolist() == [1, 2]  # user 0: only item 2 above; user 1: item 4 above, item 2 ties


def test_rank_metrics_by_hand():
    m = rank_metrics(np.array([0, 1, 3, 12]), ks=(2, 10))
    assert m["hit@2"] == pytest.approx(0.5)
    assert m["recall@10"] == pytest.approx(0.75)
    assert m["mrr@10"] == pytest.approx((1 + 1 / 2 + 1 / 4) / 4)
    assert m["ndcg@10"] == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(5)) / 4)
    assert m["ndcg@2"] == pytest.approx((1 + 1 / math.log2(3)) / 4)


def test_popularity_ranks_by_training_count_without_known_items_or_padding():
    train_item = np.array([1, 1, 1, 2, 2, 3])  # counts: item 1: 3, item 2: 2, item 3: 1, item 4: 0
    part = EvalSet(user=np.array([1, 2]), target=np.array([2, 4]), history_indptr=np.array([0, 1, 1]),
                   history_items=np.array([1]))
    m = popularity_metrics(train_item, 5, part, ks=(1, 10))
    # user 1 knows item 1, so item 2 comes first; user 2's item 4 follows 1, 2, 3 (padding is never ranked)
    assert m["hit@1"] == pytest.approx(0.5)
    assert m["ndcg@10"] == pytest.approx((1 + 1 / math.log2(5)) / 2)


def test_csr_pairs_are_relative_to_the_slice():
    indptr = np.array([0, 2, 2, 5])
    items = np.array([7, 8, 1, 2, 3])
    rows, cols = csr_pairs(indptr, items, slice(1, 3))
    assert rows.tolist() == [1, 1, 1] and cols.tolist() == [1, 2, 3]
    rows, cols = csr_pairs(indptr, items, np.array([2, 0, 1]))          # any rows, in any order: as a slice would
    assert rows.tolist() == [0, 0, 0, 1, 1] and cols.tolist() == [1, 2, 3, 7, 8]


def test_impression_metrics_by_hand():
    labels = np.array([1, 0, 0, 1])
    scores = np.array([0.9, 0.8, 0.3, 0.1])  # order: pos, neg, neg, pos
    assert auc(labels, scores) == pytest.approx(0.5)  # pos1 beats both negs, pos2 beats none
    assert mrr(labels, scores) == pytest.approx((1 + 1 / 4) / 2)
    dcg = 1 + 1 / math.log2(5)
    ideal = 1 + 1 / math.log2(3)
    assert ndcg(labels, scores, 10) == pytest.approx(dcg / ideal)
    assert ndcg(labels, scores, 2) == pytest.approx(1 / ideal)


def test_impression_metrics_skip_single_class_impressions_for_auc():
    out = impression_metrics([np.array([1, 0]), np.array([1, 1]), np.array([0, 0])],
                             [np.array([0.2, 0.1]), np.array([0.5, 0.4]), np.array([0.3, 0.2])])
    assert out["group_auc"] == pytest.approx(1.0)  # only the first impression has both classes
    assert out["mrr"] == pytest.approx((1 + (1 + 1 / 2) / 2) / 2)  # the all-negative one is skipped
