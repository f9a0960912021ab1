"""The service's numpy metrics are training's (training/evaluate.py), so offline and training figures compare."""
from __future__ import annotations

import numpy as np
import pytest

from service.feedback.metrics import impression_figures, impression_metrics, list_metrics
from training.evaluate import impression_metrics as training_impression_metrics


def test_impression_metrics_equal_trainings_on_random_impressions():
    rng = np.random.default_rng(0)
    labels, scores = [], []
    for _ in range(200):
        n = int(rng.integers(1, 12))
        labels.append((rng.random(n) < 0.3).astype(np.int64))
        scores.append(np.round(rng.random(n), 1))  # rounded: ties too
    ours, training = impression_metrics(labels, scores), training_impression_metrics(labels, scores)
    assert ours == pytest.approx(training, rel=1e-12, abs=0)  # running sums, not np.mean: rounding apart


def test_list_metrics_of_hits_at_each_position():
    shown = [["a", "b", "c"], ["a", "b", "c"], ["a", "b"], ["a", "b", "c", "d"]]
    clicked = [{"a"}, {"c"}, {"x"}, {"b", "d"}]
    got = list_metrics(shown, clicked)
    assert got["hit@k"] == pytest.approx(3 / 4)
    ideal = 1 + 1 / np.log2(3)
    assert got["ndcg@k"] == pytest.approx((1 + 1 / np.log2(4) + 0 + (1 / np.log2(3) + 1 / np.log2(5)) / ideal) / 4)


def test_an_impression_without_a_click_has_no_figures_and_one_of_clicks_only_no_auc():
    assert impression_figures(np.array([0, 0]), np.array([0.5, 0.2])) == {}
    assert impression_figures(np.array([1, 1]), np.array([0.5, 0.2])) == {"mrr": 0.75, "ndcg@5": 1.0, "ndcg@10": 1.0}
