"""`recserve train --nproc N`: start N training processes on this machine as one data-parallel group.

Imports no torch until it launches (the CLI catches `RankFailed` for every command). Each process gets
MASTER_ADDR=127.0.0.1 and a free port, joins with env:// (training/distributed.py) and runs the function it
was given; rank 0's return value comes back. The processes fork from a forkserver that has imported the
function's module (torch, the models) once, instead of each importing it again (about 6 s of CPU apiece
here); on cuda they are spawned instead, rank r on the GPU cuda:r (`_start_method`). They get the launching
process's environment as it is at launch. When a rank fails, the others are terminated and `RankFailed`
names the first rank that failed and its error; its traceback is logged at debug level (`recserve -v`).
"""
from __future__ import annotations

import json
import logging
import multiprocessing
import os
import socket
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger(__name__)


class RankFailed(RuntimeError):
    """One rank of a data-parallel run failed; all were stopped."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(nproc: int, fn: Callable[..., Any], args: tuple = (), threads: int | None = None,
           preload: tuple[str, ...] = (), device: str = "cpu") -> Any:
    """Run `fn(*args)` in `nproc` processes on this machine as one data-parallel group, `threads` torch
    threads each (default: cores / nproc); return rank 0's result (JSON-serialisable). `preload`: modules
    that `fn` imports late, for the forkserver to import once for all ranks. `device` "cuda": rank r on
    cuda:r over NCCL, refused up front (`DeviceError`) when there are fewer GPUs than processes."""
    import torch.multiprocessing as mp
    from torch.multiprocessing.spawn import ProcessException

    from training.device import require_gpus, resolve_device
    from training.distributed import default_threads

    device = resolve_device(device)
    if device == "cuda":
        require_gpus(nproc, f"--nproc {nproc}")
    threads = threads or default_threads(nproc)
    with tempfile.TemporaryDirectory(prefix="recserve-ddp-") as tmp:
        work = Path(tmp)
        setup = {"nproc": nproc, "port": free_port(), "threads": threads, "work": str(work), "device": device,
                 "log_level": logging.getLogger().getEffectiveLevel(), "environ": dict(os.environ)}
        log.info("starting %d training processes (%s, %d torch thread%s each)", nproc,
                 "nccl, one GPU each" if device == "cuda" else "gloo", threads, "s" if threads > 1 else "")
        context = mp.start_processes(_worker, args=(setup, fn, args), nprocs=nproc, join=False,
                                     start_method=_start_method([fn.__module__, *preload], device))
        spawn_log = logging.getLogger("torch.multiprocessing.spawn")
        level = spawn_log.level
        spawn_log.setLevel(logging.ERROR)  # its "Terminating process ..." says less than RankFailed does
        try:
            while not context.join():
                pass
        except ProcessException as err:
            raise RankFailed(_failure_message(err, work, nproc)) from None
        finally:
            spawn_log.setLevel(level)
            for process in context.processes:  # on any way out (Ctrl-C included) no rank is left behind
                if process.is_alive():
                    process.terminate()
                process.join()
        return json.loads((work / "result.json").read_text())


def _start_method(preload: list[str], device: str = "cpu") -> str:
    """forkserver with these modules preloaded where there is one (not on Windows), else spawn. The server
    lives as long as this process, so later launches (tests) fork from it at once. On cuda, spawn: a process
    forked from one that has asked torch about CUDA (an import may) cannot use CUDA ("Cannot re-initialize
    CUDA in forked subprocess"), and torch's advice is spawn; each rank then imports torch itself."""
    if device == "cuda" or "forkserver" not in multiprocessing.get_all_start_methods():
        return "spawn"
    multiprocessing.get_context("forkserver").set_forkserver_preload([__name__, *preload])
    return "forkserver"


def _worker(rank: int, setup: dict, fn: Callable[..., Any], args: tuple) -> None:
    from training.distributed import join, leave

    os.environ.clear()  # a forkserver's children start with the server's environment: take the launcher's
    os.environ.update(setup["environ"])

    prefix = "" if rank == 0 else f"[rank {rank}] "
    logging.basicConfig(level=setup["log_level"] if rank == 0 else max(setup["log_level"], logging.WARNING),
                        format=f"%(levelname)s %(name)s: {prefix}%(message)s")
    work = Path(setup["work"])
    try:
        join(rank, setup["nproc"], "127.0.0.1", setup["port"], setup["threads"], setup["device"])
        result = fn(*args)
        if rank == 0:
            (work / "result.json").write_text(json.dumps(result))
    except BaseException as err:
        # What the launcher reports: this rank's error, timed, so that the first failure is told from the
        # errors it caused in the other ranks (a collective whose peer went away).
        (work / f"error-{rank}.json").write_text(json.dumps({
            "rank": rank, "time": time.time(), "type": type(err).__name__, "message": str(err),
            "traceback": traceback.format_exc()}))
        raise
    finally:
        leave()


def _failure_message(err: Exception, work: Path, nproc: int) -> str:
    errors = sorted((json.loads(p.read_text()) for p in work.glob("error-*.json")), key=lambda e: e["time"])
    if errors:
        first = errors[0]
        log.debug("rank %d's traceback:\n%s", first["rank"], first["traceback"])
        message = " ".join(line.strip() for line in first["message"].splitlines()) or "(no message)"
        return f"rank {first['rank']} of {nproc} failed: {first['type']}: {message}; every rank was stopped"
    rank = getattr(err, "error_index", "?")
    signal_name = getattr(err, "signal_name", None)
    if signal_name:
        cause = f"was killed by {signal_name}" + (" (out of memory?)" if signal_name == "SIGKILL" else "")
    else:
        cause = f"exited with code {getattr(err, 'exit_code', '?')}"
    return f"rank {rank} of {nproc} {cause}; every rank was stopped"
