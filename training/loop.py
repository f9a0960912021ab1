"""The training loop. It knows one thing about a model: `compute_loss(batch)`.

Each epoch draws from streams of its own, derived from (seed, epoch) (`epoch_rng`), so a resumed run repeats
the epochs it would have run. `last.pt` holds what resuming needs, `best.pt` the best weights by the monitored
validation metric; both load with `torch.load(weights_only=True)`.

The same loop trains data-parallel over N processes when a process group is up (training/distributed.py):
each rank trains on its slice of every batch, rank 0 alone evaluates, logs and writes checkpoints.

`TrainConfig.device` says where (training/device.py): the model, and each batch as the task yields it, go
there; evaluation runs there too (the tasks put their inputs on the model's device). Checkpoints load onto
the CPU whatever the device, and export traces a CPU copy (training/export.py).
"""
from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from models.base import RecModel
from training.device import train_device
from training.distributed import World, shard, world as current_world, wrap
from training.memory import keep_freed_memory
from training.progress import duration

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    epochs: int = 10                 # upper bound on epochs
    batch_size: int = 2048           # training samples per step
    lr: float = 1e-3                 # Adam learning rate
    weight_decay: float = 0.0        # Adam weight decay
    patience: int = 3                # stop after this many epochs without a better validation metric
    monitor: str = "ndcg@10"         # validation metric for early stopping and the best checkpoint
    seed: int = 2020                 # seeds model init, sampling and dropout
    max_steps_per_epoch: int | None = None  # cap on steps per epoch (quick runs and tests)
    progress: bool = True            # show a progress bar
    eval_initial: bool = False       # validate the untrained model too: its weights stay the best until beaten
    device: str = "cpu"              # "cpu", "cuda" (a rank's own GPU) or "auto" (training/device.py)
    lr_schedule: str = "constant"    # "constant", or "cosine": from lr down to 0 over `epochs`, step by step
    max_minutes: float | None = None  # wall-clock budget: no epoch starts that would end past it (by the mean
                                     # epoch so far, evaluation included), so a run fits a time it was given


class Task(Protocol):
    """What the loop needs from the data side of one model."""

    model: RecModel

    def train_batches(self, batch_size: int, rng: np.random.Generator) -> Iterator[dict[str, Tensor]]: ...

    def num_batches(self, batch_size: int) -> int: ...

    def evaluate(self, phase: str) -> dict[str, float]: ...


@dataclass
class FitResult:
    history: list[dict] = field(default_factory=list)
    best_epoch: int = -1
    best_metric: float = -math.inf
    stopped_early: bool = False
    initial: dict | None = None      # validation metrics of the untrained model (eval_initial)


def save_checkpoint(path: Path, payload: dict) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)  # a crash mid-write never leaves a truncated checkpoint


def load_checkpoint(path: str | Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def fit(task: Task, cfg: TrainConfig, run_dir: Path, *, resume: bool = False, meta: dict | None = None,
        on_epoch: Callable[[int, float], None] | None = None) -> FitResult:
    """Train `task.model`; return the per-epoch history. The model ends holding its best weights.
    `on_epoch(epoch, valid metric)` runs after each epoch's validation (rank 0): the tuner reports to its
    trial there, and an exception it raises (a pruned trial) ends the run.

    Data-parallel (a process group is up): every rank calls this; rank 0's result holds the history, the
    other ranks' model is left as trained, not reloaded from best.pt."""
    model, world = task.model, current_world()
    keep_freed_memory()
    if world.main:
        run_dir.mkdir(parents=True, exist_ok=True)
    device = train_device(cfg.device)
    model.to(device)  # before the optimizer is built, so its state is made where the parameters are
    # fused: each step's update in one kernel over all parameters instead of a few small ops per parameter: a
    # BERT4Rec step on ml-1m 8-10% faster on the CPU (docs/benchmarks.md 11); the same update
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    result, start = FitResult(), 0
    if resume and (run_dir / "last.pt").exists():  # every rank loads the same checkpoint
        state = load_checkpoint(run_dir / "last.pt")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        result = FitResult(state["history"], state["best_epoch"], state["best_metric"], initial=state.get("initial"))
        start = state["epoch"] + 1
        if world.main:
            log.info("resuming at epoch %d/%d (best %s %.4f at epoch %d)", start + 1, cfg.epochs, cfg.monitor,
                     result.best_metric, result.best_epoch + 1)
    elif cfg.eval_initial and world.main:
        # The starting point (e.g. a pretrained encoder's zero-shot scorer) is a candidate for the best weights:
        # a run whose every epoch is worse ends holding it (best epoch -1). Rank 0 alone evaluates, as below.
        model.eval()
        with torch.no_grad():
            result.initial = task.evaluate("valid")
        result.best_metric = result.initial[cfg.monitor]
        save_checkpoint(run_dir / "best.pt", {"model": model.state_dict(), "epoch": -1, **(meta or {})})
        log.info("untrained: valid %s %.4f", cfg.monitor, result.best_metric)
    if world.from_main(start) != start:
        raise RuntimeError(f"rank {world.rank} would resume at epoch {start + 1}, rank 0 at another: --resume needs "
                           f"the same {run_dir / 'last.pt'} on every rank (several machines: --out on a shared filesystem)")
    step_loss = wrap(model, world, device) if world.size > 1 else None
    bad_epochs = sum(1 for h in result.history if h["epoch"] > result.best_epoch)
    epoch_seconds: list[float] = []  # whole epochs of this process (training, evaluation, checkpoints): the ETA
    # the budget's clock: what the run spent before a resume (its epochs, evaluation included), then this process
    spent_before = sum(h["seconds"] + h.get("eval_seconds", 0.0) for h in result.history)
    fit_started = time.perf_counter()
    for epoch in range(start, cfg.epochs):
        if cfg.max_minutes is not None and epoch_seconds:
            left = cfg.max_minutes * 60 - spent_before - (time.perf_counter() - fit_started)
            mean_epoch = float(np.mean(epoch_seconds))
            if world.from_main(mean_epoch > left):  # rank 0's clock decides for every rank
                result.stopped_early = True
                if world.main:
                    log.info("stopping: another epoch (~%s) would end past max_minutes %g (%s left)",
                             duration(mean_epoch), cfg.max_minutes, duration(max(left, 0.0)))
                break
        if world.from_main(bad_epochs >= cfg.patience):  # the other ranks wait here for rank 0's evaluation
            result.stopped_early = True
            if not world.main:
                break
            log.info("stopping early: valid %s has not beaten epoch %d's %.4f in the %d epoch(s) since (patience %d)",
                     cfg.monitor, result.best_epoch + 1, result.best_metric, bad_epochs, cfg.patience)
            break
        started = time.perf_counter()
        row = _train_epoch(task, cfg, epoch, optimizer, device, world, step_loss)
        if not world.main:
            continue
        model.eval()
        with torch.no_grad():
            row.update({f"valid_{k}": v for k, v in task.evaluate("valid").items()})
        row["eval_seconds"] = time.perf_counter() - started - row["seconds"]
        result.history.append(row)
        metric = row[f"valid_{cfg.monitor}"]
        improved = metric > result.best_metric
        if improved:
            result.best_metric, result.best_epoch, bad_epochs = metric, epoch, 0
            save_checkpoint(run_dir / "best.pt", {"model": model.state_dict(), "epoch": epoch, **(meta or {})})
        else:
            bad_epochs += 1
        save_checkpoint(run_dir / "last.pt", {
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
            "history": result.history, "best_epoch": result.best_epoch, "best_metric": result.best_metric,
            "train_config": asdict(cfg), "initial": result.initial,
        })
        epoch_seconds.append(time.perf_counter() - started)
        epochs_left = 0 if bad_epochs >= cfg.patience else cfg.epochs - epoch - 1
        log.info("epoch %d/%d: loss %.4f, valid %s %.4f%s (train %s, eval %s); %s", epoch + 1, cfg.epochs,
                 row["loss"], cfg.monitor, metric, " (best so far)" if improved else "",
                 duration(row["seconds"]), duration(row["eval_seconds"]), _eta(epoch_seconds, epochs_left))
        if on_epoch is not None:
            on_epoch(epoch, metric)
    if world.main and (run_dir / "best.pt").exists():
        model.load_state_dict(load_checkpoint(run_dir / "best.pt")["model"])
    model.eval()
    return result


def _eta(epoch_seconds: list[float], epochs_left: int) -> str:
    """The run's remaining time: the mean epoch so far (evaluation included) times the epochs left. An upper
    bound, as early stopping may end the run sooner."""
    if not epochs_left:
        return "last epoch"
    eta = duration(float(np.mean(epoch_seconds)) * epochs_left)
    return f"ETA {eta} for the run ({epochs_left} epoch{'s' if epochs_left > 1 else ''} left at most)"


def scheduled_lr(cfg: TrainConfig, epochs_done: float) -> float:
    """The learning rate after `epochs_done` (fractional) epochs of `cfg.epochs`. Cosine decay lets a run with a
    fixed budget take large steps early and settle at its end (on ml-1m BERT4Rec's validation swung +-0.005
    between epochs at a constant 1e-3: docs/benchmarks.md, section 11). A function of the step alone, so a
    resumed run and every data-parallel rank use the same rate."""
    if cfg.lr_schedule == "cosine":
        return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * min(epochs_done / cfg.epochs, 1.0)))
    return cfg.lr


def epoch_rng(seed: int, epoch: int, rank: int = 0) -> np.random.Generator:
    """Seed torch (dropout, masking) for one epoch and return the epoch's numpy generator (order, negatives).

    Both come from numpy's SeedSequence of (seed, epoch), not from `seed + epoch`: with that, epoch 0 replayed
    the stream that initialised the model (`torch.manual_seed(seed)`), and seed s's epoch 1 was seed s+1's
    epoch 0, so runs with neighbouring seeds were not independent. Data-parallel, every rank gets the same
    numpy generator (the same global batches) and a torch stream of its own (rank 0's is the single
    process's), so the ranks' slices of a batch do not share dropout and masking draws."""
    torch_seq, numpy_seq = np.random.SeedSequence([seed, epoch]).spawn(2)
    if rank:
        torch_seq = torch_seq.spawn(rank + 1)[rank]
    torch.manual_seed(int(torch_seq.generate_state(1, np.uint64)[0]))
    return np.random.default_rng(numpy_seq)


def to_device(batch: dict[str, Tensor], device: torch.device) -> dict[str, Tensor]:
    """A batch's tensors on `device` (the same tensors when they are there already)."""
    return {k: v.to(device) for k, v in batch.items()}


def _train_epoch(task: Task, cfg: TrainConfig, epoch: int, optimizer: torch.optim.Optimizer, device: torch.device,
                 world: World = World(), step_loss: torch.nn.Module | None = None) -> dict:
    """One epoch. Data-parallel, `step_loss` is the DDP-wrapped loss and each rank trains on its slice of
    every batch; the loss reported is the ranks' mean, the whole batch's loss."""
    rng = epoch_rng(cfg.seed, epoch, world.rank)
    task.model.train()
    total = task.num_batches(cfg.batch_size)
    if cfg.max_steps_per_epoch:
        total = min(total, cfg.max_steps_per_epoch)
    started, losses = time.perf_counter(), []
    desc = f"epoch {epoch + 1}/{cfg.epochs}"
    # Log lines during the epoch (NRMS builds its samples there) go through tqdm.write, above the bar, not into it.
    show = cfg.progress and world.main
    redirect = logging_redirect_tqdm() if show else contextlib.nullcontext()
    with redirect, tqdm(total=total, desc=desc, disable=not show, leave=False, unit="batch") as bar:
        for step, batch in enumerate(task.train_batches(cfg.batch_size, rng)):
            if step >= total:
                break
            # Tasks build batches on the CPU; a rank moves only its slice of one.
            if step_loss is None:
                loss = task.model.compute_loss(to_device(batch, device))
            else:
                part = shard(batch, world)
                if part is None:
                    continue
                loss = step_loss(to_device(part[0], device), part[1])
            if cfg.lr_schedule != "constant":
                for group in optimizer.param_groups:
                    group["lr"] = scheduled_lr(cfg, epoch + step / total)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss became {loss.item()} at {desc}, step {step + 1}; lower --lr")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
    mean_loss = float(np.mean(losses)) if losses else float("nan")
    return {"epoch": epoch, "loss": world.mean(mean_loss),
            "seconds": time.perf_counter() - started, "steps": len(losses)}
