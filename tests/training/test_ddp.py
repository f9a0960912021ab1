"""Data-parallel training (issue #23): 2 gloo ranks on CPU train, stop, resume and export one bundle; a failing
rank stops them all with one message. The gradient arithmetic is checked in process, the rest through
`recserve train --nproc 2 --device cpu` (each launch spawns 2 processes that import torch: a few seconds).
The NCCL path (`--device cuda`) runs only where torch sees 2 GPUs: never yet, none was lent to the session
that wrote it; what can be checked without one (the collectives' tensors on the rank's device) is in process."""
from pathlib import Path

import numpy as np
import pytest
import torch

from bundle.reader import load_bundle
from recserve.cli import main
from training.data.mind_synthetic import write_synthetic_mind
from training.data.synthetic import write_synthetic_atomic
from training import distributed
from training.distributed import FAIL_RANK_ENV, TIMEOUT_ENV, World, shard
from training.loop import load_checkpoint
from training.train import DataOptions, prepare


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_synthetic_atomic(tmp_path_factory.mktemp("atomic"), n_users=40, n_items=30, n_classes=3,
                                  interactions_per_user=(8, 16), seed=1)


@pytest.fixture(autouse=True)
def short_timeout(monkeypatch):
    # A rank left waiting in a collective fails the test in a minute instead of hanging for the default hour.
    monkeypatch.setenv(TIMEOUT_ENV, "60")


def train(data: Path, out: Path, *extra: str, device: str = "cpu") -> int:
    return main(["train", "--model", "gru4recf", "--data", str(data), "--out", str(out), "--nproc", "2",
                 "--batch-size", "64", "--lr", "3e-3", "--no-progress", "--device", device, *extra])


@pytest.fixture(scope="module")
def straight(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("straight")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(TIMEOUT_ENV, "60")
        assert train(data, out, "--epochs", "2") == 0
    return out


def test_two_ranks_train_and_rank_0_alone_exports_one_bundle(straight):
    model_dir = straight / "gru4recf"
    versions = [p for p in model_dir.iterdir() if p.name not in ("train", "LATEST")]
    assert len(versions) == 1 and (model_dir / "LATEST").read_text().strip() == versions[0].name
    bundle = load_bundle(versions[0])
    assert bundle.manifest["model"] == "gru4recf"
    history = load_checkpoint(model_dir / "train" / "last.pt")["history"]
    assert [h["epoch"] for h in history] == [0, 1] and history[1]["loss"] < history[0]["loss"]
    assert sorted(p.name for p in (model_dir / "train").glob("*.pt")) == ["best.pt", "last.pt"]


def test_resume_on_two_ranks_repeats_the_uninterrupted_run(data, straight, tmp_path, capsys):
    assert train(data, tmp_path, "--epochs", "1") == 0
    assert train(data, tmp_path, "--epochs", "2", "--resume") == 0
    assert "bundle: " in capsys.readouterr().out
    resumed = load_checkpoint(tmp_path / "gru4recf" / "train" / "last.pt")["history"]
    expected = load_checkpoint(straight / "gru4recf" / "train" / "last.pt")["history"]
    assert [h["epoch"] for h in resumed] == [0, 1]
    for a, b in zip(expected, resumed):  # every rank resumed the same weights and optimizer state
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
        assert a["valid_ndcg@10"] == pytest.approx(b["valid_ndcg@10"], rel=1e-5)


def test_early_stopping_stops_every_rank(data, tmp_path):
    # lr 0: validation never beats epoch 0, so rank 0 says stop after epoch 1; a rank that went on would wait
    # in its next step's all-reduce until the timeout.
    assert train(data, tmp_path, "--epochs", "6", "--patience", "1", "--lr", "0") == 0
    history = load_checkpoint(tmp_path / "gru4recf" / "train" / "last.pt")["history"]
    assert [h["epoch"] for h in history] == [0, 1]


def test_a_failing_rank_stops_all_with_one_message(data, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(FAIL_RANK_ENV, "1")
    assert train(data, tmp_path, "--epochs", "2") == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    err = err.strip().splitlines()
    assert err[-1] == ("recserve: error: rank 1 of 2 failed: RuntimeError: failure injected for a test "
                       f"({FAIL_RANK_ENV}=1); every rank was stopped")
    assert not (tmp_path / "gru4recf" / "LATEST").exists()


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA GPUs")
def test_two_ranks_on_two_gpus_train_over_nccl_and_export_one_bundle(data, tmp_path):
    assert train(data, tmp_path, "--epochs", "2", device="cuda") == 0
    model_dir = tmp_path / "gru4recf"
    assert load_bundle(model_dir / (model_dir / "LATEST").read_text().strip()).manifest["model"] == "gru4recf"
    history = load_checkpoint(model_dir / "train" / "last.pt")["history"]
    assert [h["epoch"] for h in history] == [0, 1] and history[1]["loss"] < history[0]["loss"]


# --- in process: what NCCL needs of the collectives -----------------------------------------------------------

class Collected(Exception):
    """Raised by a stand-in collective once it has seen its tensor."""


def test_world_collectives_put_their_tensors_on_the_ranks_device(monkeypatch):
    """NCCL reduces tensors on the rank's GPU only; "meta" stands in for it (a tensor left on the CPU fails this)."""
    devices = []

    def collective(tensor, *args, **kwargs):
        devices.append(tensor.device)
        raise Collected

    monkeypatch.setattr(distributed.dist, "broadcast", collective)
    monkeypatch.setattr(distributed.dist, "all_reduce", collective)
    rank = World(1, 2, "meta")
    for call in (lambda: rank.from_main(3), lambda: rank.mean(0.5)):
        with pytest.raises(Collected):
            call()
    assert devices == [torch.device("meta")] * 2


@pytest.mark.parametrize("backend, device", [("nccl", "cuda:1"), ("gloo", "cpu")])
def test_world_under_nccl_is_on_the_current_gpu(monkeypatch, backend, device):
    """`world()` of a rank that joined: under NCCL its current GPU, which joining set to cuda:LOCAL_RANK."""
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: True)
    monkeypatch.setattr(distributed.dist, "get_backend", lambda: backend)
    monkeypatch.setattr(distributed.dist, "get_rank", lambda: 1)
    monkeypatch.setattr(distributed.dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    assert distributed.world() == World(1, 2, device)


# --- in process: the arithmetic that makes N ranks train like one process ---------------------------------

def test_shards_split_a_batch_into_near_equal_slices_whose_shares_add_up():
    batch = {"a": torch.arange(7), "b": torch.arange(14).view(7, 2)}
    parts = [shard(batch, World(rank, 3)) for rank in range(3)]
    assert torch.equal(torch.cat([p["a"] for p, _ in parts]), batch["a"])
    assert torch.equal(torch.cat([p["b"] for p, _ in parts]), batch["b"])
    assert [len(p["a"]) for p, _ in parts] == [3, 2, 2]
    assert sum(share for _, share in parts) == pytest.approx(1.0)
    assert shard({"a": torch.arange(2)}, World(0, 3)) is None  # fewer samples than ranks: every rank skips it


@pytest.mark.parametrize("kind", ["convncf", "gru4recf"])  # a loss summed over samples, one averaged
def test_averaged_slice_gradients_equal_the_whole_batch_gradient(data, kind):
    model, task, _ = prepare(kind, data, DataOptions(), seed=0)
    model.eval()  # no dropout: the same function on every slice
    batch = next(task.train_batches(50, np.random.default_rng(0)))

    def grads(loss):
        model.zero_grad()
        loss.backward()
        return [p.grad.clone() for p in model.parameters()]

    whole = grads(model.compute_loss(batch))
    ranks = [grads(model.data_parallel_loss(*shard(batch, World(r, 3)), world_size=3)) for r in range(3)]
    for i, expected in enumerate(whole):  # DDP averages the ranks' gradients
        torch.testing.assert_close(sum(g[i] for g in ranks) / 3, expected, rtol=1e-4, atol=1e-6)


def test_every_kind_gives_every_parameter_a_gradient(data, tmp_path):
    """DDP wraps the models without find_unused_parameters: a parameter without a gradient would stop
    training at the next step ("Expected to have finished reduction in the prior iteration")."""
    mind = write_synthetic_mind(tmp_path / "mind", n_news=40, n_users=30, seed=1)
    for kind, folder in [("convncf", data), ("gru4recf", data), ("bert4rec", data), ("nrms", mind)]:
        model, task, _ = prepare(kind, folder, DataOptions(), seed=0)
        model.train()
        model.compute_loss(next(task.train_batches(16, np.random.default_rng(0)))).backward()
        missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
        assert not missing, f"{kind}: {missing}"
