"""What recording costs the warm /rank path (issue #29's budget: at most 5% lower), and that a dead sink costs
nothing more and holds memory bounded, as ratios taken in one run.

    python bench/feedback_cost.py --before <commit> --artifacts <artifacts> [--repeats 3] [--soak 600]

Each run is a real uvicorn server (one worker, Redis on for the cache and state), wrk at concurrency 16: GET
/healthz, then warm POST /rank (50 known users named by `user_id`, 100 candidates each; bench/state_cost.py's
bodies). A row is /rank req/s over the /healthz req/s just before it. The configurations alternate, `--repeats`
times, and the medians are compared, with the worker's CPU time per /rank (from /proc: steadier than a
throughput on a shared machine):
- before: `--before`, a commit that records nothing;
- not recording: this tree with RECSERVE_FEEDBACK_SAMPLE=0 (request ids, no answer recorded or counted): what
  the rest of the tree changed since `--before`, apart from recording;
- redis: this tree, the feedback log on the Redis stream (the default with Redis);
- files: this tree, the JSON Lines files sink;
- sink down: this tree, the log's Redis (RECSERVE_FEEDBACK_REDIS_URL) a port where nothing listens.
`--sample 0.25` adds a row of the Redis sink recording a quarter of the answers, `--flush 0.1` one flushing every
0.1 s. `--threads` prints, per /rank, each thread's CPU (the event loop's thread is "main"), page faults and context
switches; `--pin` runs the worker alone on core 0 and wrk and Redis on core 1 (what the worker itself costs, as where
clients and Redis run elsewhere). Redis's own CPU per /rank is printed too. wrk fails the run on any non-2xx
answer. `--soak S` then keeps /rank under load for S seconds with the sink
down, sampling the worker's resident memory every 30 s, and reports the records dropped. Run it alone.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx

from state_cost import REDIS_URL, ROOT, forget, free_port, rank_bodies, serve, wrk


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def stat_fields(path: Path) -> list[str]:
    """/proc/<pid>/stat or /proc/<pid>/task/<tid>/stat, the fields after the command name (state first)."""
    return path.read_text().rsplit(")", 1)[1].split()


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) the process has used: what a request costs the worker, whatever else the
    machine does meanwhile (its throughput moved by +-8% between runs of the same code here)."""
    fields = stat_fields(Path(f"/proc/{pid}/stat"))
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def counters(pid: int) -> dict[str, float]:
    """Each thread's CPU seconds (user and system apart; the event loop's thread is "main"), and the minor page
    faults and context switches of all threads together: whether a /rank's CPU is Python's or the kernel's."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {"minflt": 0.0, "voluntary_ctxt_switches": 0.0, "nonvoluntary_ctxt_switches": 0.0}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = stat_fields(task / "stat")
            status = (task / "status").read_text().splitlines()
        except OSError:  # the thread ended meanwhile
            continue
        name = "main" if task.name == str(pid) else f"thread {task.name}"
        out[f"{name} user"], out[f"{name} sys"] = int(fields[11]) / tick, int(fields[12]) / tick
        out["minflt"] += int(fields[7])
        for line in status:
            key, _, value = line.partition(":")
            if key in out:
                out[key] += int(value)
    return out


def pin(pid: int, cores: set[int]) -> None:
    """Every thread of `pid` onto `cores`."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        os.sched_setaffinity(int(task.name), cores)


def redis_pid() -> int:
    """The process of the Redis the bench uses, as Redis itself reports it."""
    import redis

    return int(redis.Redis.from_url(REDIS_URL).info("server")["process_id"])


def per_rank(before: dict[str, float], after: dict[str, float], ranks: float) -> str:
    """`counters` moved over `ranks` requests: CPU in us, faults and switches as counts, each a /rank."""
    per = {k: (v - before.get(k, 0.0)) / ranks * (1e6 if k.endswith(("user", "sys")) else 1) for k, v in after.items()}
    return ", ".join(f"{k} {v:.2f}" for k, v in sorted(per.items()) if abs(v) > 0.005)


def dropped(url: str) -> float:
    total = 0.0
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith("recserve_log_dropped_total{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def configurations(before: Path, tmp: Path, dead: str) -> dict[str, tuple[Path, dict[str, str]]]:
    """The rows every feedback bench compares: name -> (tree, RECSERVE_ settings). `dead`: a Redis URL where
    nothing listens."""
    return {"before": (before, {}), "not recording": (ROOT, {"RECSERVE_FEEDBACK_SAMPLE": "0"}), "redis": (ROOT, {}),
            "files": (ROOT, {"RECSERVE_FEEDBACK_SINK": "files", "RECSERVE_FEEDBACK_DIR": f"{tmp}/log"}),
            "sink down": (ROOT, {"RECSERVE_FEEDBACK_REDIS_URL": dead})}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--before", required=True, help="a commit that records nothing")
    p.add_argument("--artifacts", type=Path, required=True)
    p.add_argument("--model", default="gru4recf", help="a model that keeps histories")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seconds", type=int, default=5)
    p.add_argument("--soak", type=int, default=0, help="seconds of load with the sink down, memory sampled")
    p.add_argument("--sample", type=float, nargs="*", default=[],
                   help="also the Redis sink recording this share of answers (RECSERVE_FEEDBACK_SAMPLE), each a row")
    p.add_argument("--threads", action="store_true",
                   help="also print each thread's CPU (us, user and system), page faults and context switches a /rank")
    p.add_argument("--flush", type=float, nargs="*", default=[],
                   help="also the Redis sink flushing every this many seconds (RECSERVE_FEEDBACK_FLUSH_S), each a row")
    p.add_argument("--pin", action="store_true",
                   help="the worker alone on core 0, wrk and Redis on core 1: the worker's own cost, as where Redis and "
                        "the clients run on other machines")
    p.add_argument("--configs", nargs="*", help="only these rows (names as printed; default: all)")
    args = p.parse_args()
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    server = redis_pid()
    if args.pin:
        os.sched_setaffinity(0, {1})  # this script and wrk, its child
        pin(server, {1})
    with tempfile.TemporaryDirectory() as tmp:
        before = Path(tmp) / "before"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(before), args.before], check=True)
        configs = {**configurations(before, Path(tmp), dead),
                   **{f"redis, {s:.0%} sampled": (ROOT, {"RECSERVE_FEEDBACK_SAMPLE": str(s)}) for s in args.sample},
                   **{f"redis, flush {f:g} s": (ROOT, {"RECSERVE_FEEDBACK_FLUSH_S": str(f)}) for f in args.flush}}
        configs = {name: configs[name] for name in args.configs or configs}
        try:
            bodies = rank_bodies(args.artifacts, args.model, Path(tmp), "user_id")
            ratios: dict[str, list[float]] = {name: [] for name in configs}
            cpu: dict[str, list[float]] = {name: [] for name in configs}
            for _ in range(args.repeats):
                for name, (tree, settings) in configs.items():
                    prefix = f"bench-{uuid.uuid4().hex[:8]}"
                    proc, url = serve(tree, args.artifacts, prefix, settings)
                    if args.pin:
                        pin(proc.pid, {0})
                    try:
                        wrk(f"{url}/rank", bodies, 2, "POST")  # warm: every user vector cached
                        healthz = wrk(f"{url}/healthz", None, args.seconds, "GET")
                        before_cpu, before_redis = cpu_s(proc.pid), cpu_s(server)
                        before_counts = counters(proc.pid) if args.threads else {}
                        rank = wrk(f"{url}/rank", bodies, args.seconds, "POST")
                        cpu_us = (cpu_s(proc.pid) - before_cpu) / (rank * args.seconds) * 1e6
                        redis_us = (cpu_s(server) - before_redis) / (rank * args.seconds) * 1e6
                        if args.threads:
                            print("  per /rank: " + per_rank(before_counts, counters(proc.pid), rank * args.seconds))
                        lost = dropped(url) if tree == ROOT else 0
                    finally:
                        proc.terminate()
                        proc.wait(20)
                        forget(prefix)
                    ratios[name].append(rank / healthz)
                    cpu[name].append(cpu_us)
                    print(f"{name}: /healthz {healthz:.0f} req/s, warm /rank {rank:.0f} req/s, ratio "
                          f"{rank / healthz:.3f}, worker CPU {cpu_us:.0f} us a /rank, Redis {redis_us:.0f}, "
                          f"records dropped {lost:.0f}",
                          flush=True)
            med = {k: statistics.median(v) for k, v in ratios.items()}
            first = next(iter(configs))
            cpu_med = {k: statistics.median(v) for k, v in cpu.items()}
            print(json.dumps({"median_ratio": med, "over_first": {k: v / med[first] for k, v in med.items()},
                              "cpu_us_median": cpu_med, "runs": ratios, "cpu_us": cpu}), flush=True)
            if args.soak:
                soak(args, bodies, dead)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(before)], check=False)
            if args.pin:  # Redis serves other work after the run
                pin(server, set(range(os.cpu_count())))


def soak(args, bodies: Path, dead: str) -> None:
    """/rank under load for `args.soak` seconds with the log's Redis down: resident memory every 30 s."""
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    proc, url = serve(ROOT, args.artifacts, prefix, {"RECSERVE_FEEDBACK_REDIS_URL": dead})
    samples = []
    try:
        wrk(f"{url}/rank", bodies, 2, "POST")
        load = threading.Thread(target=lambda: samples.append(("rps", wrk(f"{url}/rank", bodies, args.soak, "POST"))))
        start = time.monotonic()
        load.start()
        while load.is_alive():
            samples.append((round(time.monotonic() - start), rss_mb(proc.pid)))
            load.join(30)
        print(json.dumps({"soak_s": args.soak, "rss_mb": [s for s in samples if s[0] != "rps"],
                          "rank_rps": [s[1] for s in samples if s[0] == "rps"], "dropped": dropped(url)}), flush=True)
    finally:
        proc.terminate()
        proc.wait(20)
        forget(prefix)


if __name__ == "__main__":
    main()
