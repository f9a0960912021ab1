"""train_mode window (training/data/sequences.py window_samples): the faster path gives the reference
path's loss where they should agree, and its batches cover every target once."""

import numpy as np
import pytest
import torch

from models.registry import recipe
from training.data.sequences import prefix_samples, window_samples
from training.data.synthetic import write_synthetic_atomic
from training.interactions import by_length_in_pools
from training.loop import fit
from training.train import DataOptions, prepare, train_config

N_ITEMS = 40
MAX_LEN = 8


def sequences(lengths, seed=0):
    """Users 1.. with the given numbers of training items (random items), interleaved as rows come from a file."""
    rng = np.random.default_rng(seed)
    user = np.concatenate([np.full(n, u + 1) for u, n in enumerate(lengths)])
    item = rng.integers(1, N_ITEMS, size=len(user))
    position = np.concatenate([np.arange(n) for n in lengths])
    order = np.lexsort((user, position))  # round robin over the users; within a user, time order
    return user[order], item[order]


def tensors(samples: dict) -> dict:
    return {k: torch.from_numpy(v) for k, v in samples.items() if k not in ("user", "targets")}


def test_windows_cover_every_target_once_and_short_users_whole():
    user, item = sequences([1, 2, 5, MAX_LEN + 1, MAX_LEN + 2, 3 * MAX_LEN + 4])
    w = window_samples(user, item, MAX_LEN)
    assert w["item_seq"].shape[1] == MAX_LEN + 1 and np.array_equal(w["targets"], w["seq_len"] - 1)
    for u in np.unique(user):
        own = item[user == u]
        rows = np.flatnonzero(w["user"] == u)
        assert w["targets"][rows].sum() == len(own) - 1               # each item after the first, once
        if len(own) <= MAX_LEN + 1 and len(own) >= 2:
            assert len(rows) == 1 and list(w["item_seq"][rows[0], : len(own)]) == list(own)
        # the windows, latest first, overlap by one item and end at the sequence's end
        end = len(own)
        for r in rows:
            n = w["seq_len"][r]
            assert list(w["item_seq"][r, :n]) == list(own[end - n: end]) and not w["item_seq"][r, n:].any()
            end -= n - 1
    assert 1 not in w["user"]                                           # one item: nothing to predict


@pytest.fixture
def gru():
    torch.manual_seed(0)
    r = recipe("gru4recf")
    model = r.model(r.config(n_items=N_ITEMS, feature_vocab_sizes={"class": 6}, feature_lengths={"class": 2},
                             max_seq_length=MAX_LEN, train_mode="window"))
    model.set_item_features({"class": torch.randint(0, 6, (N_ITEMS, 2))})
    return model.eval()  # no dropout: both paths see the same numbers


def test_gru4recf_window_loss_equals_the_mean_of_the_prefix_samples_losses(gru):
    # users of unequal lengths up to a full window: a per-window mean would weight the short users' targets
    # more; the equality holds only for the mean over targets, i.e. over prefix samples
    user, item = sequences([2, 3, 5, MAX_LEN, MAX_LEN + 1], seed=1)
    with torch.no_grad():
        reference = gru.compute_loss(tensors(prefix_samples(user, item, MAX_LEN)))
        window = gru.compute_loss(tensors(window_samples(user, item, MAX_LEN)))
        one_by_one = torch.stack([
            gru.compute_loss({k: v[i: i + 1] for k, v in tensors(prefix_samples(user, item, MAX_LEN)).items()})
            for i in range(len(prefix_samples(user, item, MAX_LEN)["target"]))]).mean()
    assert torch.allclose(window, reference, atol=1e-5), (window, reference)
    assert torch.allclose(window, one_by_one, atol=1e-5)
    # and the gradient: the same step
    gru.zero_grad()
    gru.compute_loss(tensors(prefix_samples(user, item, MAX_LEN))).backward()
    expected = [p.grad.clone() for p in gru.parameters() if p.grad is not None]
    gru.zero_grad()
    gru.compute_loss(tensors(window_samples(user, item, MAX_LEN))).backward()
    for want, p in zip(expected, [p for p in gru.parameters() if p.grad is not None]):
        assert torch.allclose(p.grad, want, atol=1e-5)


def test_gru4recf_windows_of_long_users_differ_only_by_shorter_history(gru):
    # past a window the positions see at most the window's items: the prefix samples cut to that history agree
    user, item = sequences([3 * MAX_LEN + 2], seed=2)
    w = window_samples(user, item, MAX_LEN)
    prefixes = {"item_seq": [], "seq_len": [], "target": []}
    for seq, n in zip(w["item_seq"], w["seq_len"]):
        for i in range(1, n):
            prefixes["item_seq"].append(np.r_[seq[:i], np.zeros(MAX_LEN - i, np.int64)])
            prefixes["seq_len"].append(i)
            prefixes["target"].append(seq[i])
    with torch.no_grad():
        cut = gru.compute_loss({k: torch.tensor(np.array(v)) for k, v in prefixes.items()})
        window = gru.compute_loss(tensors(w))
    assert torch.allclose(window, cut, atol=1e-5)


def test_bert4rec_window_loss_equals_the_last_prefix_samples_when_only_the_last_is_masked():
    torch.manual_seed(0)
    r = recipe("bert4rec")
    model = r.model(r.config(n_items=N_ITEMS, max_seq_length=MAX_LEN, ft_ratio=1.0)).eval()
    user, item = sequences([2, 4, MAX_LEN + 1], seed=3)
    prefix = prefix_samples(user, item, MAX_LEN)
    last = np.r_[prefix["user"][1:] != prefix["user"][:-1], True]     # each user's sample of its last item
    with torch.no_grad():
        reference = model.compute_loss({k: v[last] for k, v in tensors(prefix).items()})
        window = model.compute_loss(tensors(window_samples(user, item, MAX_LEN)))
    assert torch.allclose(window, reference, atol=1e-6)


def test_bert4rec_window_masks_several_positions_per_sequence():
    torch.manual_seed(0)
    r = recipe("bert4rec")
    model = r.model(r.config(n_items=N_ITEMS, max_seq_length=MAX_LEN, ft_ratio=0.0, mask_ratio=0.5))
    user, item = sequences([MAX_LEN + 1] * 20, seed=4)
    w = tensors(window_samples(user, item, MAX_LEN))
    masked = model._training_mask(w["item_seq"], w["seq_len"] - 1)
    assert masked.sum(1).float().mean() > 3                              # ~half of 9 items, last always
    assert masked[torch.arange(len(masked)), w["seq_len"] - 1].all()
    assert not (masked & (w["item_seq"] == 0)).any()


@pytest.fixture(scope="module")
def atomic(tmp_path_factory):
    return write_synthetic_atomic(tmp_path_factory.mktemp("atomic"), n_users=80, n_items=40, n_classes=4, seed=5)


@pytest.mark.parametrize("kind", ["gru4recf", "bert4rec"])
def test_window_mode_batches_cover_every_target_once_an_epoch(atomic, kind):
    model, task, _ = prepare(kind, atomic, DataOptions(max_seq_length=MAX_LEN), 0, {"train_mode": "window"})
    assert task.window and task.samples["item_seq"].shape[1] == MAX_LEN + 1
    reference = prepare(kind, atomic, DataOptions(max_seq_length=MAX_LEN), 0, {"train_mode": "prefix"})[1]
    assert not reference.window and int(task.targets.sum()) == reference.size  # as many targets as prefix samples
    batches = list(task.train_batches(64, np.random.default_rng(0)))
    assert len(batches) == task.num_batches(64)
    targets = [int((b["seq_len"] - 1).sum()) for b in batches]
    assert sum(targets) == reference.size
    assert sorted(targets)[1] > 64 - MAX_LEN                              # batch_size targets, give or take a window
    # each batch cut to its longest window, no real item lost: padded back, the rows are the task's windows
    assert all(b["item_seq"].shape[1] == int(b["seq_len"].max()) for b in batches)
    rows = torch.cat([torch.nn.functional.pad(b["item_seq"], (0, MAX_LEN + 1 - b["item_seq"].shape[1])) for b in batches])
    assert len(rows) == task.size and len(torch.unique(rows, dim=0)) == len(torch.unique(task.samples["item_seq"], dim=0))


def test_window_batches_group_windows_of_one_length_in_a_random_order():
    # 300 users: 100 with short sequences, 200 longer than a window (a full window plus a short remainder)
    user, item = sequences([3] * 100 + [2 * MAX_LEN + 3] * 200, seed=6)
    lengths = window_samples(user, item, MAX_LEN)["seq_len"]
    targets = lengths - 1
    order = np.random.default_rng(0).permutation(len(lengths))
    pooled = by_length_in_pools(order, lengths, targets, pool_targets=1000)
    pool_of = np.empty(len(order), dtype=int)
    pool_of[order] = np.cumsum(targets[order]) // 1000                   # each window's pool, by the shuffled order
    assert len(np.unique(pool_of)) > 2 and sorted(pooled) == list(range(len(lengths)))
    assert (np.diff(pool_of[pooled]) >= 0).all()                          # the pools in turn
    for p in np.unique(pool_of):
        members = pooled[pool_of[pooled] == p]
        assert sorted(members) == sorted(order[pool_of[order] == p])       # each pool's own windows
        assert (np.diff(lengths[members]) >= 0).all()                      # sorted by length within it
        for n in np.unique(lengths[members]):                              # one length keeps the shuffled order
            same = members[lengths[members] == n]
            assert list(same) == [w for w in order if pool_of[w] == p and lengths[w] == n]


@pytest.mark.parametrize("kind", ["gru4recf", "bert4rec"])
def test_a_batch_cut_to_its_longest_window_has_the_full_width_loss(kind):
    # windows are left-aligned and the models mask padding: cutting the padded tail changes no number
    torch.manual_seed(0)
    r = recipe(kind)
    extra = ({"feature_vocab_sizes": {"class": 6}, "feature_lengths": {"class": 2}} if kind == "gru4recf"
             else {"ft_ratio": 1.0})  # BERT4Rec: only the last item masked, so both widths draw the same mask
    model = r.model(r.config(n_items=N_ITEMS, max_seq_length=MAX_LEN, train_mode="window", **extra)).eval()
    if kind == "gru4recf":
        model.set_item_features({"class": torch.randint(0, 6, (N_ITEMS, 2))})
    user, item = sequences([2, 3, 5], seed=7)
    w = tensors(window_samples(user, item, MAX_LEN))
    assert w["item_seq"].shape[1] == MAX_LEN + 1 and int(w["seq_len"].max()) == 5
    with torch.no_grad():
        full = model.compute_loss(w)
        cut = model.compute_loss({**w, "item_seq": w["item_seq"][:, :5]})
    assert torch.allclose(full, cut, atol=1e-6), (full, cut)


@pytest.mark.parametrize("kind", ["gru4recf", "bert4rec"])
def test_window_mode_trains(atomic, tmp_path, kind):
    model, task, _ = prepare(kind, atomic, DataOptions(max_seq_length=MAX_LEN), 0, {"train_mode": "window"})
    cfg = train_config(kind, epochs=2, batch_size=64, lr=3e-3, progress=False, patience=5)
    result = fit(task, cfg, tmp_path)
    losses = [h["loss"] for h in result.history]
    assert all(np.isfinite(losses)) and losses[1] < losses[0]
    assert result.history[0]["steps"] == task.num_batches(64)


@pytest.mark.parametrize("kind", ["gru4recf", "bert4rec"])
def test_evaluation_by_length_gives_the_full_width_metrics(atomic, kind):
    from training.evaluate import csr_pairs, rank_metrics, target_ranks

    model, task, _ = prepare(kind, atomic, DataOptions(max_seq_length=100), 0, {"train_mode": "window"})
    model.eval()
    part, inputs = task.split.valid, task.eval_inputs("valid")
    assert len(set(inputs["seq_len"].tolist())) > 1  # histories of several lengths: batches are cut differently
    with torch.no_grad():  # every user at once, at the full width, in the split's order
        scores = model.full_sort_scores(model.user_vectors(inputs), model.item_vectors())
        ranks = target_ranks(scores, torch.from_numpy(part.target.astype(np.int64)),
                             *csr_pairs(part.history_indptr, part.history_items, slice(0, len(part.target))))
    task.eval_batch_size = 7
    expected = rank_metrics(ranks.numpy(), (5, 10))
    assert task.evaluate("valid", ks=(5, 10)) == pytest.approx(expected, abs=1e-6)
