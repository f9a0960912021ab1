"""Data-parallel training over N processes (issue #23): torch DistributedDataParallel, gloo on CPU, NCCL on GPU.

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

The backend follows the device (`recserve train --device`, training/device.py): gloo on the CPU; on CUDA each
rank takes the GPU cuda:LOCAL_RANK of its machine (`torch.cuda.set_device` when it joins), joins with nccl,
and DDP gets `device_ids=[LOCAL_RANK]`. NCCL reduces CUDA tensors only, so `World`'s own collectives (rank 0's
decisions, the mean loss) put their tensors on the rank's GPU too (`World.device`). `--nproc N` on cuda needs N
GPUs and says so up front; torchrun's LOCAL_RANK is checked against the GPUs when a rank joins.
The CUDA path has not been run: no GPU was lent to the session that wrote it (docs/benchmarks.md, section 7).
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
    device: str = "cpu"  # where the collectives' tensors live: NCCL reduces only tensors on the rank's GPU

    @property
    def main(self) -> bool:
        return self.rank == 0

    def from_main(self, value: int) -> int:
        """Rank 0's `value` on every rank (the others' is ignored). Also where the other ranks wait for rank 0."""
        if self.size == 1:
            return value
        found = torch.tensor([int(value)], dtype=torch.int64, device=self.device)
        dist.broadcast(found, src=0)
        return type(value)(found.item())

    def mean(self, value: float) -> float:
        """The mean of `value` over the ranks."""
        if self.size == 1:
            return value
        total = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(total)
        return total.item() / self.size


def world() -> World:
    if dist.is_available() and dist.is_initialized():
        # under NCCL, this rank's GPU: the one `_join` made current
        device = f"cuda:{torch.cuda.current_device()}" if dist.get_backend() == "nccl" else "cpu"
        return World(dist.get_rank(), dist.get_world_size(), device)
    return World()


def shard(batch: dict[str, Tensor], world: World) -> tuple[dict[str, Tensor], float] | None:
    """This rank's slice of a global batch and its share of the samples (of the targets, for windows, whose
    loss is a mean over their targets); None when the batch has fewer samples than there are ranks (at most the
    epoch's last batch): every rank then skips it."""
    n = len(next(iter(batch.values())))
    if n < world.size:
        return None
    parts = {k: torch.tensor_split(v, world.size)[world.rank] for k, v in batch.items()}
    if "seq_len" in batch and "target" not in batch:  # windows (train_mode window): the loss averages over targets
        return parts, float((parts["seq_len"] - 1).sum()) / float((batch["seq_len"] - 1).sum())
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


def wrap(model: nn.Module, world: World, device: torch.device) -> nn.Module:
    """The model's loss under DDP, the model already on `device`. Every parameter of the four kinds gets a
    gradient from every loss (tests/training/test_ddp.py checks it), so DDP needs no find_unused_parameters;
    the buffers (item feature tables, title tokens) are data, the same on every rank: synced once when
    wrapped, not before every step. On CUDA, DDP is told the rank's one GPU (`device_ids`); on the CPU it
    takes none."""
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(ShardLoss(model, world.size), device_ids=device_ids, forward_sync_buffers=False)


def backend_for(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


def rank_device(device: str, local_rank: int) -> torch.device:
    """This rank's device for --device `device`, made the current one on CUDA: the GPU of its local rank, so
    the ranks of a machine take one GPU each, and `fit` (training/device.py's `train_device`) and `world()`
    find it there."""
    from training.device import require_gpus, resolve_device

    if resolve_device(device) != "cuda":
        return torch.device("cpu")
    require_gpus(local_rank + 1, f"local rank {local_rank} (torchrun --nproc-per-node, or --nproc)")
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


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


def join(rank: int, size: int, addr: str, port: int, threads: int, device: str = "cpu") -> World:
    """Join the group as `rank` of `size` (training/launch.py's processes, all on this machine: the local
    rank is the rank). `device`: "cpu" or "cuda"."""
    os.environ.update(MASTER_ADDR=addr, MASTER_PORT=str(port))
    return _join(threads, device, rank, rank=rank, world_size=size)


def init_from_torchrun(threads: int | None = None, device: str = "cpu") -> World:
    """Join the group torchrun's variables describe (env://)."""
    local_size = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return _join(threads or default_threads(local_size), device, int(os.environ.get("LOCAL_RANK", "0")))


def _join(threads: int, device: str, local_rank: int, **where) -> World:
    torch.set_num_threads(threads)
    backend = backend_for(rank_device(device, local_rank))
    dist.init_process_group(backend, init_method="env://", timeout=timeout(), **where)
    if os.environ.get(FAIL_RANK_ENV) == str(dist.get_rank()):
        raise RuntimeError(f"failure injected for a test ({FAIL_RANK_ENV}={dist.get_rank()})")
    return world()


def leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
