"""What a shadow arm costs the live answers (issue #30's budget: the live p99 within noise), in one run.

    python bench/shadow_cost.py --artifacts ARTIFACTS [--model gru4recf] [--shadow-model bert4rec]
                                [--rate 200] [--seconds 20] [--repeats 3] [--sample 1.0]

Each row is a real uvicorn server (one worker, Redis on for the cache, state, log and counters) serving an
experiment `shadow_bench` of `--model` at LATEST (the control, answering every request; a second arm of weight 0,
because an experiment has two arms at least) and, in the shadow rows, a shadow arm of `--shadow-model` scoring
`--sample` of the answers:
- none: no shadow arm;
- shadow, loop: the shadow arm scored on the event loop between requests (the default);
- shadow, thread: RECSERVE_SHADOW_THREAD=true, its /rank scoring in a thread of its own.
The load is open-loop: warm POST /rank (bench/state_cost.py's 50 known users by `user_id`, 100 candidates each)
sent at `--rate` requests/s from an async client whatever the answers' pace, each request's latency taken from
the moment it was due (so a stalled server shows, not hides, the wait). A row prints the live p50/p99, the
worker's CPU time per request (from /proc) and the shadow readout's jobs, dropped and latency. The rows
alternate, `--repeats` times, and the medians are printed last. Run it alone on the machine.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import numpy as np

from feedback_cost import cpu_s
from state_cost import ROOT, forget, rank_bodies, serve, wrk

EXPERIMENT = "shadow_bench"


def experiments_file(folder: Path, model: str, shadow_model: str | None, sample: float) -> Path:
    arms = [{"name": "live", "model": model, "weight": 1, "control": True},
            {"name": "idle", "model": model, "weight": 0}]
    if shadow_model is not None:
        arms.append({"name": "shadow", "model": shadow_model, "shadow": True, "sample": sample})
    path = folder / f"experiments-{'shadow' if shadow_model else 'none'}.json"
    path.write_text(json.dumps({"experiments": [{"name": EXPERIMENT, "arms": arms}]}))
    return path


async def open_loop(url: str, bodies: list[bytes], rate: float, seconds: float) -> np.ndarray:
    """Latencies (s) of `rate` x `seconds` requests sent on a fixed schedule, each from when it was due."""
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        async def one(body: bytes, due: float) -> None:
            r = await client.post(url, content=body, headers={"content-type": "application/json"})
            if r.status_code != 200:
                raise SystemExit(f"{url}: {r.status_code} {r.text[:200]}")
            latencies.append(time.perf_counter() - due)

        start, tasks = time.perf_counter() + 0.05, []
        for i in range(int(rate * seconds)):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(bodies[i % len(bodies)], due)))
        await asyncio.gather(*tasks)
    return np.asarray(latencies)


def shadow_readout(url: str) -> dict | None:
    arm = httpx.get(f"{url}/experiments/{EXPERIMENT}").json()["arms"].get("shadow")
    return arm["shadow_readout"] if arm else None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--artifacts", type=Path, required=True)
    p.add_argument("--model", default="gru4recf", help="the live arm's model (one that keeps histories)")
    p.add_argument("--shadow-model", default="bert4rec", help="the shadow arm's model (same item ids as --model)")
    p.add_argument("--sample", type=float, default=1.0, help="the shadow arm's share of the live requests")
    p.add_argument("--rate", type=float, default=200, help="live requests per second (open loop)")
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--configs", nargs="*", help="only these rows (names as printed; default: all)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        none = experiments_file(folder, args.model, None, args.sample)
        shadow = experiments_file(folder, args.model, args.shadow_model, args.sample)
        configs = {"none": {"RECSERVE_EXPERIMENTS": str(none)},
                   "shadow, loop": {"RECSERVE_EXPERIMENTS": str(shadow)},
                   "shadow, thread": {"RECSERVE_EXPERIMENTS": str(shadow), "RECSERVE_SHADOW_THREAD": "true"}}
        configs = {name: configs[name] for name in args.configs or configs}
        path = rank_bodies(args.artifacts, args.model, folder, "user_id")
        bodies = [json.dumps({**json.loads(line), "model": EXPERIMENT}).encode()
                  for line in path.read_text().splitlines()]
        warm = folder / "warm.jsonl"
        warm.write_bytes(b"\n".join(bodies) + b"\n")
        rows: dict[str, dict[str, list[float]]] = {name: {"p50_ms": [], "p99_ms": [], "cpu_us": []} for name in configs}
        for _ in range(args.repeats):
            for name, settings in configs.items():
                prefix = f"bench-{uuid.uuid4().hex[:8]}"
                proc, url = serve(ROOT, args.artifacts, prefix, settings)
                try:
                    wrk(f"{url}/rank", warm, 2, "POST")  # warm: every user vector cached, the shadow's too
                    time.sleep(2)  # the shadow queue the warm-up filled (and overflowed) drains; counters flush
                    start = shadow_readout(url)
                    before_cpu = cpu_s(proc.pid)
                    latencies = asyncio.run(open_loop(f"{url}/rank", bodies, args.rate, args.seconds))
                    cpu_us = (cpu_s(proc.pid) - before_cpu) / len(latencies) * 1e6
                    time.sleep(1.5)  # the counters' flush (RECSERVE_FEEDBACK_FLUSH_S)
                    readout = shadow_readout(url)
                finally:
                    proc.terminate()
                    proc.wait(20)
                    forget(prefix)
                p50, p99 = (float(np.quantile(latencies, q) * 1000) for q in (0.5, 0.99))
                for key, value in (("p50_ms", p50), ("p99_ms", p99), ("cpu_us", cpu_us)):
                    rows[name][key].append(value)
                about = "" if readout is None else (  # jobs of the measured load; latency and overlap since start
                    f"; shadow jobs {readout['jobs'] - start['jobs']}, "
                    f"dropped {readout['dropped'] - start['dropped']}, "
                    f"errors {readout['errors'] - start['errors']}, scoring p50/p99 "
                    f"{readout['latency_ms']['shadow']['p50']}/{readout['latency_ms']['shadow']['p99']} ms (bucket "
                    f"bounds), overlap@10 {readout['overlap']:.3f}")
                print(f"{name}: {len(latencies)} requests at {args.rate:g}/s, live p50 {p50:.2f} ms, p99 {p99:.2f} ms, "
                      f"worker CPU {cpu_us:.0f} us a request{about}", flush=True)
        print(json.dumps({"rate": args.rate, "seconds": args.seconds, "sample": args.sample,
                          "median": {name: {k: statistics.median(v) for k, v in row.items()}
                                     for name, row in rows.items()}, "runs": rows}), flush=True)


if __name__ == "__main__":
    main()
