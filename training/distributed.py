"""Data-parallel training over N processes (issue #23): torch DistributedDataParallel, gloo on CPU.

There is one training loop (training/loop.py) for one process or N. With a process group up, `fit`:
- wraps the model's loss in DistributedDataParallel, which averages the ranks' gradients in backward;
- gives every rank the same epoch streams for the batch order and negatives (`epoch_rng`), so every rank makes
  the same global batches, and each trains on its slice of every one (`shard`): N slices of batch_size / N,
  so the global batch is the single-process one; dropout and masking draw from streams of the rank's own;
- evaluates, logs, writes checkpoints on rank 0 alone, which then tells every rank whether to go on
  (`World.from_main`): early stopping stops all ranks together, and the others wait there meanwhile;
- on --resume every rank loads the same last.pt (weights_only=True).
`training.train.run` exports on rank 0 alone.

Two ways to start the ranks:
- `recserve train --nproc N` (training/launch.py): N processes on this machine, MASTER_ADDR=127.0.0.1 and
  a free port, cores / N torch threads each; when one rank fails, the others are terminated and the command
  fails with one message naming the rank and its error (`RankFailed`).
- `torchrun --nproc-per-node N [--nnodes ...] -m recserve train ...`: each process finds torchrun's
  variables (RANK, WORLD_SIZE, MASTER_ADDR, ...) and joins with env:// (`init_from_torchrun`).

The backend is gloo: the loop trains on the CPU (no model or batch is moved to a GPU yet), and NCCL only
reduces CUDA tensors. `backend_for` picks nccl for a CUDA device once the loop has one.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import Tensor, nn

# How long a rank waits in a collective, e.g. for rank 0's evaluation and checkpoints, before it gives up.
TIMEOUT_ENV = "RECSERVE_DIST_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 3600.0
# For tests only: the rank named here raises right after joining the group, as a rank that fails would.
FAIL_RANK_ENV = "RECSERVE_TEST_FAIL_RANK"
TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class World:
    """This process's place among the training processes: rank 0 of 1 without a process group."""

    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def from_main(self, value: int) -> int:
        """Rank 0's `value` on every rank (the others' is ignored). Also where the other ranks wait for rank 0."""
        if self.size == 1:
            return value
        found = torch.tensor([int(value)], dtype=torch.int64)
        dist.broadcast(found, src=0)
        return type(value)(found.item())

    def mean(self, value: float) -> float:
        """The mean of `value` over the ranks."""
        if self.size == 1:
            return value
        total = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(total)
        return total.item() / self.size


def world() -> World:
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size())
    return World()


def shard(batch: dict[str, Tensor], world: World) -> tuple[dict[str, Tensor], float] | None:
    """This rank's slice of a global batch and its share of the samples; None when the batch has fewer
    samples than there are ranks (at most the epoch's last batch): every rank then skips it."""
    n = len(next(iter(batch.values())))
    if n < world.size:
        return None
    parts = {k: torch.tensor_split(v, world.size)[world.rank] for k, v in batch.items()}
    return parts, len(next(iter(parts.values()))) / n


class ShardLoss(nn.Module):
    """What DDP wraps: it syncs gradients of what its module's forward computed, and a model's forward is not
    its training loss. The loss is scaled (RecModel.data_parallel_loss) so that the ranks' averaged gradients
    are the gradient of the whole global batch's loss."""

    def __init__(self, model: nn.Module, world_size: int):
        super().__init__()
        self.model, self.world_size = model, world_size

    def forward(self, batch: dict[str, Tensor], share: float) -> Tensor:
        return self.model.data_parallel_loss(batch, share, self.world_size)


def wrap(model: nn.Module, world: World) -> nn.Module:
    """The model's loss under DDP. Every parameter of the four kinds gets a gradient from every loss
    (tests/training/test_ddp.py checks it), so DDP needs no find_unused_parameters; the buffers (item feature
    tables, title tokens) are data, the same on every rank: synced once when wrapped, not before every step."""
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(ShardLoss(model, world.size), forward_sync_buffers=False)


def backend_for(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


def timeout() -> timedelta:
    return timedelta(seconds=float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S)))


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_threads(procs_here: int) -> int:
    """Torch threads per rank: this machine's cores shared evenly by its ranks."""
    return max(1, cores() // procs_here)


def torchrun_env() -> bool:
    """True inside a process that torchrun (or another env:// launcher) started as one of several."""
    return all(v in os.environ for v in TORCHRUN_VARS) and int(os.environ["WORLD_SIZE"]) > 1


def join(rank: int, size: int, addr: str, port: int, threads: int) -> World:
    """Join the group as `rank` of `size` (training/launch.py's processes)."""
    os.environ.update(MASTER_ADDR=addr, MASTER_PORT=str(port))
    return _join(threads, rank=rank, world_size=size)


def init_from_torchrun(threads: int | None = None) -> World:
    """Join the group torchrun's variables describe (env://)."""
    return _join(threads or default_threads(int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))


def _join(threads: int, **where) -> World:
    torch.set_num_threads(threads)
    dist.init_process_group(backend_for(torch.device("cpu")), init_method="env://", timeout=timeout(), **where)
    if os.environ.get(FAIL_RANK_ENV) == str(dist.get_rank()):
        raise RuntimeError(f"failure injected for a test ({FAIL_RANK_ENV}={dist.get_rank()})")
    return world()


def leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
