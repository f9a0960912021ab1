"""What recording costs a warm /rank in instructions: the worker run under valgrind's callgrind, which counts every
instruction the process executes (all its threads), so the figure does not move with what else the machine does.
On a shared machine whose throughput moves by +-20% between runs of the same code, a 5% budget cannot be read
from req/s (bench/feedback_cost.py); an instruction count repeats to about 1%. (bench/rank_instructions.py counts
a /rank in process, without HTTP or Redis; recording needs the real worker: its recorder task and I/O thread, the
Redis client, the stop that writes what is held.)

    python bench/feedback_instructions.py --before <commit> --artifacts <artifacts> [--seconds 40] [--repeats 1]
                                          [--configs before "not recording" redis] [--keep DIR]

Per configuration (bench/feedback_cost.py's: before, not recording, redis, files, sink down): one uvicorn worker of
that tree under `valgrind --tool=callgrind --instr-atstart=no`, Redis on; wrk at concurrency 16 warms it (every
user vector cached: 50 known users by `user_id`, 100 candidates), then instrumentation is switched on
(`callgrind_control -i on`), wrk sends warm /rank for `--seconds`, the /rank count is read from /metrics, and the
worker is stopped (SIGTERM: the recorder writes what it holds, inside the count). A worker of the same
configuration left idle as long, then stopped, gives what it spends whatever the load (timers, threads waking,
the stop): ~1.4 M instructions a second, 3% of a /rank's count at the ~30 /rank a second a worker answers under
callgrind, and more the fewer it answers, so it is subtracted. Instructions a /rank = (loaded - idle) / the /rank
requests answered. What it leaves out: the kernel's side of system calls (socket reads and writes) and the cost of
cache misses. Under callgrind the recorder's batches are RECSERVE_FEEDBACK_FLUSH_S=10 s of answers (~300), not the
~2,000 of full speed: its per-batch costs weigh more here than in service (an upper bound on them). `--keep` keeps
the callgrind files (`callgrind_annotate --tree=caller` says which C functions the difference is in).
"""
from __future__ import annotations

import argparse
import json
import re
import signal
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from feedback_cost import configurations
from state_cost import ROOT, forget, free_port, rank_bodies, serve, wrk

FLUSH_S = "10"  # the longest the settings allow: batches as large as a worker this slow can make
WRK_TIMEOUT_S = 30  # a /rank under callgrind takes up to ~1 s at concurrency 16


def rank_count(url: str) -> float:
    """The /rank requests the worker has answered (recserve_request_seconds_count, every status)."""
    text = httpx.get(f"{url}/metrics", timeout=60).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("recserve_request_seconds_count") and 'route="/rank"' in line)


def instructions(out: Path) -> int:
    """The instruction count of a callgrind output file (its `totals:` line)."""
    text = out.read_text(errors="replace")
    found = re.findall(r"^totals:\s+(\d+)", text, flags=re.M)
    if not found:
        raise SystemExit(f"{out}: no instruction total")
    return int(found[-1])


def measure(tree: Path, artifacts: Path, settings: dict, bodies: Path | None, seconds: int, folder: Path,
            keep: Path | None = None, name: str = "") -> tuple[int, float]:
    """(instructions counted, /rank requests answered meanwhile) of one worker of `tree` under callgrind, loaded
    with `bodies` for `seconds`, or left idle as long when `bodies` is None; its file kept in `keep` as
    callgrind.<name>.<requests>.<id>."""
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    out = folder / f"callgrind.{uuid.uuid4().hex[:8]}"
    callgrind = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}"]
    proc, url = serve(tree, artifacts, prefix, {"RECSERVE_FEEDBACK_FLUSH_S": FLUSH_S, **settings}, callgrind,
                      ready_s=300)
    try:
        if bodies is not None:
            wrk(f"{url}/rank", bodies, 10, "POST", WRK_TIMEOUT_S)  # warm: user vectors cached, ids' JSON made
        time.sleep(float(FLUSH_S) + 2)  # what the warm-up queued is written before the count starts
        first = rank_count(url)
        subprocess.run(["callgrind_control", "-i", "on", str(proc.pid)], capture_output=True, check=True)
        if bodies is None:
            time.sleep(seconds)
        else:
            wrk(f"{url}/rank", bodies, seconds, "POST", WRK_TIMEOUT_S)
        answered = rank_count(url) - first
        proc.send_signal(signal.SIGTERM)  # the recorder writes what it holds, counted
        proc.wait(300)
    finally:
        if proc.poll() is None:
            proc.kill()
        forget(prefix)
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        out = out.rename(keep / f"callgrind.{name.replace(' ', '_')}.{answered:.0f}.{out.name.rsplit('.', 1)[1]}")
    return instructions(out), answered


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--before", required=True, help="a commit that records nothing")
    p.add_argument("--artifacts", type=Path, required=True)
    p.add_argument("--model", default="gru4recf", help="a model that keeps histories")
    p.add_argument("--seconds", type=int, default=40)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--configs", nargs="*", default=["before", "not recording", "redis"])
    p.add_argument("--keep", type=Path, help="keep the callgrind files here (`callgrind_annotate` reads them)")
    args = p.parse_args()
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    with tempfile.TemporaryDirectory() as tmp:
        before = Path(tmp) / "before"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(before), args.before],
                       check=True)
        configs = configurations(before, Path(tmp), dead)
        try:
            bodies = rank_bodies(args.artifacts, args.model, Path(tmp), "user_id")
            per_rank: dict[str, list[float]] = {name: [] for name in args.configs}
            idle: dict[str, int] = {}
            for _ in range(args.repeats):
                for name in args.configs:
                    tree, settings = configs[name]
                    if name not in idle:  # what the worker does with no request (timers, threads) and to stop
                        idle[name], _ = measure(tree, args.artifacts, settings, None, args.seconds, Path(tmp),
                                                args.keep, f"{name} idle")
                    total, answered = measure(tree, args.artifacts, settings, bodies, args.seconds, Path(tmp),
                                              args.keep, name)
                    per_rank[name].append((total - idle[name]) / answered)
                    print(f"{name}: {per_rank[name][-1] / 1e6:.4f} M instructions a /rank ({answered:.0f} /rank "
                          f"counted; {total / 1e6:.0f} M in all, {idle[name] / 1e6:.0f} M idle)", flush=True)
            med = {k: statistics.median(v) for k, v in per_rank.items()}
            first = args.configs[0]
            print(json.dumps({"instructions_per_rank": med, "over_first": {k: v / med[first] for k, v in med.items()},
                              "runs": per_rank}), flush=True)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(before)], check=False)


if __name__ == "__main__":
    main()
