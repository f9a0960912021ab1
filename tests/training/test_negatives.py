"""ConvNCF's negatives: uniform over the items that are not the user's training positives, as RecBole draws
them (held-out validation and test items can be drawn: excluding them would leak the split into training)."""
import numpy as np
import pytest

from models.convncf import ConvNCF, ConvNCFConfig
from training.data.atomic import read_atomic
from training.data.split import leave_one_out
from training.data.synthetic import write_synthetic_atomic
from training.interactions import InteractionTask, sample_negatives


def test_negatives_are_redrawn_until_none_is_a_positive():
    n_items = 10  # indices 1..9
    users = np.repeat([0, 1], 4000)
    positive_keys = np.unique(np.r_[0 * n_items + np.arange(1, 8), 1 * n_items + np.arange(1, 9)])
    negatives = sample_negatives(users, n_items, positive_keys, np.random.default_rng(0))
    assert set(negatives[users == 0].tolist()) == {8, 9}  # both, uniformly
    assert abs((negatives[users == 0] == 8).mean() - 0.5) < 0.05
    assert set(negatives[users == 1].tolist()) == {9}  # one item left: every draw lands on it in the end
    few_rounds = sample_negatives(users, n_items, positive_keys, np.random.default_rng(0), rounds=1)
    assert not np.isin(users * n_items + few_rounds, positive_keys).any()  # the leftovers are drawn exactly


def test_a_user_with_every_item_is_a_clear_error():
    positive_keys = np.arange(1, 10)  # user 0 has items 1..9 of 10
    with pytest.raises(ValueError, match="user index 0 has interacted with every item"):
        sample_negatives(np.zeros(4, dtype=np.int64), 10, positive_keys, np.random.default_rng(0))


def test_training_negatives_skip_training_items_but_may_be_held_out_items(tmp_path):
    data = read_atomic(write_synthetic_atomic(tmp_path, n_users=60, n_items=60, n_classes=3, seed=1))
    split = leave_one_out(data)
    task = InteractionTask(ConvNCF(ConvNCFConfig(n_users=len(data.users), n_items=len(data.items))), data, split)
    train = set(zip(split.train_user.tolist(), split.train_item.tolist()))
    held_out = set(zip(split.valid.user.tolist(), split.valid.target.tolist())) | set(
        zip(split.test.user.tolist(), split.test.target.tolist()))
    drawn = set()
    rng = np.random.default_rng(0)
    for _ in range(20):
        for batch in task.train_batches(256, rng):
            drawn |= set(zip(batch["user"].tolist(), batch["neg_item"].tolist()))
    assert not drawn & train
    assert drawn & (held_out - train)
