"""Which device training runs on: `recserve train --device {auto,cpu,cuda}`.

Imports no torch until a function needs it: the CLI catches `DeviceError` for every command, and building
its parser must stay light. A data-parallel rank on CUDA trains on its own GPU, cuda:LOCAL_RANK
(training/distributed.py sets it when the rank joins), so `--nproc N` needs N GPUs.
"""
from __future__ import annotations

DEVICES = ("auto", "cpu", "cuda")


class DeviceError(RuntimeError):
    """The device asked for is not here (no CUDA, or fewer GPUs than processes)."""


def resolve_device(name: str) -> str:
    """"cpu" or "cuda" for --device `name`: auto is cuda when torch can use a GPU here, else cpu."""
    import torch

    if name not in DEVICES:
        raise DeviceError(f"unknown device {name!r}; one of {', '.join(DEVICES)}")
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"--device cuda: no usable CUDA device here ({_why_no_cuda()}); use --device cpu or auto")
    return name


def _why_no_cuda() -> str:
    import torch

    if torch.version.cuda is None:
        return f"torch {torch.__version__} is a CPU-only build; install a CUDA build of the same version"
    return (f"torch {torch.__version__} (CUDA {torch.version.cuda}) finds no GPU: check the driver and "
            "CUDA_VISIBLE_DEVICES")


def require_gpus(needed: int, who: str) -> None:
    """Refuse `who` (e.g. "--nproc 4") when torch sees fewer than `needed` GPUs: each rank takes a GPU of its
    own (NCCL lets no two ranks share one), and a rank without one would fail deep in torch ("invalid device
    ordinal") after the others had started."""
    import torch

    found = torch.cuda.device_count()
    if needed > found:
        raise DeviceError(f"{who} on cuda needs {needed} GPUs, one per process; torch sees {found} here "
                          "(CUDA_VISIBLE_DEVICES chooses which); use fewer processes or --device cpu")


def train_device(name: str):
    """The torch device this process trains on for --device `name`: the CPU, or its current GPU (a rank's is
    cuda:LOCAL_RANK, made current when it joined the group; one process's is cuda:0 unless set otherwise)."""
    import torch

    if resolve_device(name) == "cuda":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")
