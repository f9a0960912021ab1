"""The synthetic atomic dataset: it parses, it is deterministic, and its structure is really there."""
from __future__ import annotations

import numpy as np
import pytest

from training.data.atomic import read_atomic
from training.data.split import leave_one_out
from training.data.synthetic import write_synthetic_atomic


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return read_atomic(write_synthetic_atomic(tmp_path_factory.mktemp("syn"), seed=0))


def test_parses_with_the_promised_shape(tmp_path, data):
    assert data.name == "synthetic" and len(data.users) == 301 and len(data.items) <= 201
    counts = np.bincount(data.user)[1:]
    assert counts.min() >= 15 and counts.max() <= 40
    assert len(np.unique(data.user * len(data.items) + data.item)) == len(data.user)  # no item twice per user
    assert set(np.unique(data.rating)) <= {1, 2, 3, 4, 5}
    same_user = data.user[1:] == data.user[:-1]
    assert (np.diff(data.timestamp)[same_user] > 0).all()
    classes = (data.item_features["class"] > 0).sum(1)
    assert classes[0] == 0 and set(classes[1:]) <= {1, 2} and (classes[1:] == 2).any()
    assert len(data.feature_vocabs["class"]) == 9
    small = read_atomic(write_synthetic_atomic(tmp_path, name="tiny", n_users=5, n_items=12, n_classes=3,
                                               interactions_per_user=(12, 12), seed=4))
    assert small.name == "tiny" and len(small.user) == 60 and len(small.items) == 13


def test_deterministic_for_a_seed(tmp_path):
    a, b, c = (write_synthetic_atomic(tmp_path / d, seed=s) for d, s in (("a", 3), ("b", 3), ("c", 4)))
    for suffix in ("inter", "item"):
        assert (a / f"synthetic.{suffix}").read_bytes() == (b / f"synthetic.{suffix}").read_bytes()
    assert (a / "synthetic.inter").read_bytes() != (c / "synthetic.inter").read_bytes()


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError):
        write_synthetic_atomic(tmp_path, n_items=10, interactions_per_user=(5, 11))
    with pytest.raises(ValueError):
        write_synthetic_atomic(tmp_path, interactions_per_user=(9, 8))
    with pytest.raises(ValueError, match="sum <= 1"):
        write_synthetic_atomic(tmp_path, p_successor=0.7, p_taste=0.5)
    with pytest.raises(ValueError, match="non-negative"):
        write_synthetic_atomic(tmp_path, p_taste=-0.1)


def shares_class(classes: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    x, y = classes[a][:, :, None], classes[b][:, None, :]
    return ((x == y) & (x > 0)).any(axis=(1, 2))


def test_next_item_shares_a_class_with_the_previous_far_more_than_chance(data):
    classes = data.item_features["class"]
    same_user = data.user[1:] == data.user[:-1]
    consecutive = shares_class(classes, data.item[:-1][same_user], data.item[1:][same_user]).mean()
    rng = np.random.default_rng(0)
    chance = shares_class(classes, data.item, rng.permutation(data.item)).mean()  # same item marginals
    assert consecutive > 2.5 * chance, (consecutive, chance)


def test_transitions_beat_popularity(data):
    """Most frequent training successor of the last item vs most popular item, top-1 on the test targets."""
    split = leave_one_out(data)
    n = len(data.items)
    same_user = split.train_user[1:] == split.train_user[:-1]
    transitions = np.zeros((n, n))
    np.add.at(transitions, (split.train_item[:-1][same_user], split.train_item[1:][same_user]), 1)
    popularity = np.bincount(split.train_item, minlength=n).astype(float)
    hits_transition = hits_popular = 0
    for row, target in enumerate(split.test.target):
        history = split.test.history(row)
        by_transition, by_popularity = transitions[history[-1]].copy(), popularity.copy()
        by_transition[history] = by_popularity[history] = -1
        by_transition[0] = by_popularity[0] = -1
        hits_transition += by_transition.argmax() == target
        hits_popular += by_popularity.argmax() == target
    n_test = len(split.test)
    assert hits_transition / n_test > 0.3 and hits_transition > 4 * hits_popular, (hits_transition, hits_popular)


def taste_ratio(data) -> float:
    """A user's top class's share of their items, on average, over the top class's share of all items."""
    classes = data.item_features["class"]
    one_hot = np.zeros((len(data.items), len(data.feature_vocabs["class"])))
    np.add.at(one_hot, (np.repeat(np.arange(len(data.items)), classes.shape[1]), classes.ravel()), 1)
    one_hot[:, 0] = 0
    per_user = np.zeros((len(data.users), one_hot.shape[1]))
    np.add.at(per_user, data.user, one_hot[data.item])
    user_top_share = (per_user[1:].max(1) / per_user[1:].sum(1)).mean()
    overall = per_user.sum(0)
    return user_top_share / (overall.max() / overall.sum())


def popularity_skew(data) -> float:
    """Interactions of the most drawn item over the mean per item."""
    counts = np.bincount(data.item, minlength=len(data.items))[1:]
    return counts.max() / counts.mean()


def test_users_have_tastes(data):
    assert taste_ratio(data) > 1.5


def test_the_mix_can_be_set(tmp_path, data):
    """Without successor or taste steps and with flat popularity, every user draws alike and uniformly; with
    taste steps only (the data ConvNCF's test learns from), tastes are stronger than in the default mix."""
    uniform = read_atomic(write_synthetic_atomic(tmp_path / "uniform", p_successor=0.0, p_taste=0.0,
                                                 zipf_exponent=0.0, seed=0))
    tastes = read_atomic(write_synthetic_atomic(tmp_path / "tastes", p_successor=0.0, p_taste=0.9,
                                                zipf_exponent=0.0, seed=0))
    assert popularity_skew(uniform) < 2 < popularity_skew(data)
    assert taste_ratio(uniform) < taste_ratio(data) < taste_ratio(tastes)
