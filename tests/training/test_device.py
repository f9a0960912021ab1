"""Where training runs (`recserve train --device`): resolution and its refusals, fit and evaluation putting the
model and its inputs on the training device, and the CPU path unchanged by the option.

No GPU was lent to the session that wrote this: the placement tests move things to torch's "meta" device,
which every torch build has, and stop at the first tensor a computation would need to read; the tests marked
`cuda` run only where torch finds a GPU (they never ran when written)."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from models.base import RecModel
from recserve.cli import main
from tests.training.test_cli import one_error_line
from training import loop
from training.data.mind_synthetic import write_synthetic_mind
from training.data.synthetic import write_synthetic_atomic
from training.device import DeviceError, resolve_device
from training.distributed import backend_for, rank_device
from training.launch import launch
from training.loop import TrainConfig, fit, load_checkpoint
from training.train import DataOptions, prepare, run, train_config

META = torch.device("meta")
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def atomic(tmp_path_factory):
    return write_synthetic_atomic(tmp_path_factory.mktemp("atomic"), n_users=40, n_items=30, n_classes=3,
                                  interactions_per_user=(8, 16), seed=1)


# --- resolution and refusals --------------------------------------------------------------------------------

def test_auto_is_cuda_where_torch_can_use_a_gpu_and_cpu_elsewhere():
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(DeviceError, match="unknown device 'tpu'"):
        resolve_device("tpu")


def test_cuda_without_a_gpu_is_refused_at_once_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    # The data folder does not exist: a refusal that came after reading it would name the folder instead.
    assert main(["train", "--model", "gru4recf", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path),
                 "--device", "cuda"]) == 2
    line = one_error_line(capsys)
    assert line.startswith("recserve: error: --device cuda: no usable CUDA device here (torch ")
    assert line.endswith("; use --device cpu or auto")
    assert not (tmp_path / "gru4recf").exists()


def test_more_processes_than_gpus_are_refused_before_any_starts(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert main(["train", "--model", "gru4recf", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path),
                 "--device", "cuda", "--nproc", "2"]) == 2
    assert one_error_line(capsys) == (
        "recserve: error: --nproc 2 on cuda needs 2 GPUs, one per process; torch sees 1 here (CUDA_VISIBLE_DEVICES "
        "chooses which); use fewer processes or --device cpu")
    # auto means cuda where there is a GPU: the same refusal, not a silent fallback to the CPU
    assert main(["train", "--model", "gru4recf", "--data", str(tmp_path / "nowhere"), "--nproc", "2"]) == 2
    assert "--nproc 2 on cuda needs 2 GPUs" in one_error_line(capsys)
    # the library's launcher refuses too (`fn` would fail the test if a process ran it)
    with pytest.raises(DeviceError, match="--nproc 3 on cuda needs 3 GPUs"):
        launch(3, pytest.fail, ("a rank started",), device="cuda")
    # a torchrun rank whose LOCAL_RANK has no GPU of its own, when it joins
    with pytest.raises(DeviceError, match=r"local rank 1 \(torchrun --nproc-per-node, or --nproc\) on cuda needs 2"):
        rank_device("cuda", 1)


def test_the_backend_follows_the_device():
    assert backend_for(torch.device("cpu")) == "gloo"
    assert backend_for(torch.device("cuda")) == "nccl"
    assert backend_for(torch.device("cuda", 1)) == "nccl"
    assert rank_device("cpu", 3) == torch.device("cpu")  # a cpu rank never asks for a GPU


# --- placement: fit and evaluation run where the model is ---------------------------------------------------

class Stop(Exception):
    """Raised by a probe once it has seen what the test asks about."""


class ProbeModel(RecModel):
    """Records where its parameters and its training batch are when the loop asks for the loss."""

    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(2, 1)
        self.seen: dict[str, torch.device] = {}

    def compute_loss(self, batch):
        self.seen.update(parameters=self.device, batch=batch["x"].device)
        raise Stop


class ProbeTask:
    def __init__(self):
        self.model = ProbeModel()

    def num_batches(self, batch_size):
        return 1

    def train_batches(self, batch_size, rng):
        yield {"x": torch.zeros(4, 2)}  # built on the CPU, as every task builds them

    def evaluate(self, phase):
        raise AssertionError("not reached")


def test_fit_puts_the_model_and_every_batch_on_its_training_device(tmp_path, monkeypatch):
    monkeypatch.setattr(loop, "train_device", lambda name: META)  # the device `fit` was given, whatever it is
    task = ProbeTask()
    with pytest.raises(Stop):
        fit(task, TrainConfig(epochs=1, progress=False), tmp_path)
    assert task.model.seen == {"parameters": META, "batch": META}


def user_inputs_on(model: RecModel, task, phase: str) -> set[torch.device]:
    """The devices of what `task.evaluate` gives the model's user encoder, the model on the meta device."""
    seen = set()

    def user_vectors(batch, *rest):
        seen.update(v.device for v in batch.values())
        raise Stop

    model.to(META)
    model.user_vectors = user_vectors
    with pytest.raises(Stop):
        task.evaluate(phase)
    return seen


def test_interaction_evaluation_feeds_the_model_on_its_device(atomic):
    for kind in ("gru4recf", "convncf"):  # a sequence model, a model of user ids
        model, task, _ = prepare(kind, atomic, DataOptions(), seed=0)
        assert user_inputs_on(model, task, "valid") == {META}, kind


def test_news_evaluation_feeds_the_model_on_its_device(tmp_path):
    model, task, _ = prepare("nrms", write_synthetic_mind(tmp_path / "mind", n_news=40, n_users=30, seed=1),
                             DataOptions(), seed=0)
    # NRMS's title encoder reads lengths back (data-dependent widths), which the meta device cannot: the news
    # vectors stand in, on the model's device as encode_news makes them.
    model.encode_news = lambda: torch.zeros(model.n_items, model.dim, device=META)
    assert user_inputs_on(model, task, "valid") == {META}


# --- the CPU path, as before --------------------------------------------------------------------------------

def test_device_cpu_trains_and_exports_what_the_library_default_does(atomic, tmp_path, capsys):
    """`recserve train --device cpu` against `run` with TrainConfig's default (the CPU, the only path before
    --device): the same epochs, metrics and ONNX files byte for byte (GRU4RecF trains deterministically)."""
    args = ["--epochs", "2", "--batch-size", "64", "--no-progress"]
    assert main(["train", "--model", "gru4recf", "--data", str(atomic), "--out", str(tmp_path / "cli"), *args,
                 "--device", "cpu"]) == 0
    library = run("gru4recf", atomic, tmp_path / "lib", train_config("gru4recf", epochs=2, batch_size=64,
                                                                      progress=False))
    cli_metrics = json.loads((tmp_path / "cli" / "gru4recf" / "train" / "metrics.json").read_text())
    assert untimed(cli_metrics["history"]) == untimed(library.metrics["history"])
    assert cli_metrics["valid"] == library.metrics["valid"] and cli_metrics["test"] == library.metrics["test"]
    cli_bundle = bundle_dir(tmp_path / "cli" / "gru4recf")
    for graph in ("item_encoder.onnx", "user_encoder.onnx", "scorer.onnx"):
        assert (cli_bundle / graph).read_bytes() == (library.bundle / graph).read_bytes(), graph
    manifest = json.loads((cli_bundle / "manifest.json").read_text())
    assert manifest["training"]["train_config"]["device"] == "cpu"


def untimed(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if not k.endswith("seconds")} for row in history]


def bundle_dir(model_dir: Path) -> Path:
    return model_dir / (model_dir / "LATEST").read_text().strip()


# --- on a GPU (skipped here: none was lent to the session that wrote them) ----------------------------------

def graph_nodes(path: Path) -> list:
    import onnx

    return [(n.op_type, list(n.input), list(n.output)) for n in onnx.load(str(path)).graph.node]


@cuda
def test_cuda_trains_checkpoints_for_the_cpu_and_exports_the_cpu_runs_graphs(atomic, tmp_path):
    for kind in ("gru4recf", "convncf", "bert4rec"):
        on_gpu = run(kind, atomic, tmp_path / "gpu", train_config(kind, epochs=1, batch_size=64, progress=False,
                                                                   device="cuda"))
        on_cpu = run(kind, atomic, tmp_path / "cpu", train_config(kind, epochs=1, batch_size=64, progress=False))
        state = load_checkpoint(on_gpu.run_dir / "best.pt")["model"]
        assert {t.device.type for t in state.values()} == {"cpu"}
        for graph in ("item_encoder.onnx", "user_encoder.onnx", "scorer.onnx"):
            assert graph_nodes(on_gpu.bundle / graph) == graph_nodes(on_cpu.bundle / graph), (kind, graph)
        assert np.isfinite(on_gpu.metrics["valid"]["ndcg@10"])
