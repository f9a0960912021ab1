"""What shared state costs the warm /rank path (issue #20's budget: at most 10%), as ratios taken in one run.

    python bench/state_cost.py --before <commit> --artifacts <artifacts> [--before-artifacts <artifacts>]
                               [--by user_id|history] [--repeats 3]

For two checkouts (`--before`, a commit without shared state, and this working tree), each run as a real
uvicorn server (one worker, Redis on), it measures with wrk at concurrency 16: GET /healthz, then warm
POST /rank for known users named by `user_id` alone (their stored history is read: with shared state from
Redis, before from the process), 100 candidates. A row is /rank req/s over the /healthz req/s just before it;
the checkouts alternate, `--repeats` times, and the medians are compared. Run it alone on the machine.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
REDIS_URL = "redis://127.0.0.1:6379/0"  # the Redis every bench server uses (cache, state, the feedback log)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wrk(url: str, bodies: Path | None, seconds: int, method: str, timeout_s: int = 2) -> float:
    """Requests a second at concurrency 16; fails on any non-2xx answer or socket error (a reply slower than
    `timeout_s`, wrk's own default 2 s, is one)."""
    args = ["wrk", "-t1", "-c16", f"-d{seconds}s", "--timeout", f"{timeout_s}s", "-s",
            str(ROOT / "bench" / "wrk_bodies.lua"), url, "--", str(bodies or "/dev/null"), method]
    last = subprocess.run(args, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
    out = json.loads(last)
    assert out["non2xx"] == 0 and out["socket_errors"] == 0, out
    return out["requests"] / (out["duration_us"] / 1e6)


def serve(tree: Path, artifacts: Path, prefix: str, settings: dict | None = None, wrapper: Sequence[str] = (),
          ready_s: float = 120) -> tuple[subprocess.Popen, str]:
    """One uvicorn worker of `tree` on `artifacts`, Redis on; `settings`: more RECSERVE_ variables; `wrapper`: a
    command the worker runs under (valgrind ...), given `ready_s` seconds to answer /readyz."""
    port = free_port()
    env = {**os.environ, "RECSERVE_ARTIFACTS": str(artifacts), "RECSERVE_REDIS_URL": REDIS_URL,
           "RECSERVE_CACHE_PREFIX": prefix, "RECSERVE_LOG_LEVEL": "warning", "PYTHONPATH": str(tree),
           **(settings or {})}
    proc = subprocess.Popen([*wrapper, sys.executable, "-m", "uvicorn", "service.app:app", "--port", str(port)],
                            cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + ready_s
    while True:
        try:
            if httpx.get(f"{url}/readyz").status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise SystemExit(f"{tree}: the server did not get ready")
        time.sleep(0.2)


def forget(prefix: str) -> None:
    """Delete the run's keys (state keys have no TTL)."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    if keys:
        client.delete(*keys)


def rank_bodies(artifacts: Path, model: str, folder: Path, by: str) -> Path:
    """50 users' /rank bodies: named by `user_id` alone (their stored history is read) or with their history."""
    from bundle.reader import load_bundle, resolve_latest

    bundle = load_bundle(resolve_latest(artifacts / model))
    items = bundle.items.all()
    histories = bundle.histories.as_ids(lambda i: items[i - 1])
    rng = random.Random(0)
    path = folder / "rank.jsonl"
    path.write_text("".join(json.dumps({"model": model, "user_id": u, "candidates": rng.sample(items, min(100, len(items))),
                                        **({"history": h[-50:]} if by == "history" else {})}) + "\n"
                            for u, h in list(histories.items())[:50]))
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--before", required=True, help="a commit without shared state")
    p.add_argument("--artifacts", type=Path, required=True)
    p.add_argument("--before-artifacts", type=Path,
                   help="what the `--before` tree serves, when it reads an older bundle format (the same weights "
                        "exported by each tree); default --artifacts")
    p.add_argument("--model", default="gru4recf", help="a model that keeps histories")
    p.add_argument("--by", choices=["user_id", "history"], default="user_id",
                   help="user_id: requests name the user alone (the stored history is read); history: they send it")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seconds", type=int, default=5)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        before = Path(tmp) / "before"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(before), args.before], check=True)
        try:
            bodies = rank_bodies(args.artifacts, args.model, Path(tmp), args.by)
            ratios: dict[str, list[float]] = {"before": [], "after": []}
            for _ in range(args.repeats):
                for name, tree, served in (("before", before, args.before_artifacts or args.artifacts),
                                           ("after", ROOT, args.artifacts)):
                    prefix = f"bench-{uuid.uuid4().hex[:8]}"
                    proc, url = serve(tree, served, prefix)
                    try:
                        wrk(f"{url}/rank", bodies, 2, "POST")  # warm: every user vector cached
                        healthz = wrk(f"{url}/healthz", None, args.seconds, "GET")
                        rank = wrk(f"{url}/rank", bodies, args.seconds, "POST")
                    finally:
                        proc.terminate()
                        proc.wait(20)
                        forget(prefix)
                    ratios[name].append(rank / healthz)
                    print(f"{name}: /healthz {healthz:.0f} req/s, warm /rank {rank:.0f} req/s, ratio {rank / healthz:.3f}",
                          flush=True)
            med = {k: statistics.median(v) for k, v in ratios.items()}
            print(json.dumps({"median_ratio": med, "after_over_before": med["after"] / med["before"], "runs": ratios}))
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(before)], check=False)


if __name__ == "__main__":
    main()
