"""What an experiment costs a worker (issue #30): the memory of a second version held for a pinned arm, and
assignment's time on the request path. In process, no server:

    python bench/experiment_cost.py --artifacts ARTIFACTS --model gru4recf --pinned VERSION

Memory: VmRSS, RssAnon (private) and RssFile (mapped bundle files, shared by every worker) from /proc/self/status
after loading LATEST's bundle, then after loading the pinned version beside it; and the bytes of each version's
files that are memory-mapped (item vectors, index, external graph weights) against the rest (onnxruntime
reads the graphs into private memory). Time: `Served.answer` (hash + pick) per request, against the plain
model lookup (one dict get), the per-arm counter's add, and `ranking_json` with and without the arm's two fields.

`--http` measures instead what assignment costs the warm /rank path of a real server (issue #30's budget: at
most 5%): one uvicorn worker, Redis on, wrk at concurrency 16 on /rank of 50 known users (100 candidates),
the same bodies naming the model, then an experiment of two arms at LATEST (50/50: the same bundle, so only
the assignment, the answer's two fields and the per-arm counter differ); rows alternate `--repeats` times;
/rank req/s and the worker's CPU per /rank (from /proc) are compared by their medians.
"""
from __future__ import annotations

import argparse
import json
import timeit
from pathlib import Path

import numpy as np


def status() -> dict[str, float]:
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return {k: round(int(fields[k].split()[0]) / 1024, 2) for k in ("VmRSS", "RssAnon", "RssFile")}


def file_bytes(folder: Path) -> dict[str, int]:
    mapped = [p for p in folder.iterdir() if p.suffix in (".npy", ".usearch") or p.name.startswith("weights-")]
    return {"mapped": sum(p.stat().st_size for p in mapped),
            "other": sum(p.stat().st_size for p in folder.iterdir() if p not in mapped)}


def http_cost(args) -> None:
    import statistics
    import sys
    import tempfile
    import uuid

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from feedback_cost import cpu_s
    from state_cost import ROOT, forget, rank_bodies, serve, wrk

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        plain = rank_bodies(args.artifacts, args.model, folder, "user_id")
        via = folder / "experiment.jsonl"
        via.write_text("".join(json.dumps({**json.loads(line), "model": "exp"}) + "\n"
                               for line in plain.read_text().splitlines()))
        config = folder / "experiments.json"
        config.write_text(json.dumps({"experiments": [{"name": "exp", "arms": [
            {"name": "a", "model": args.model, "weight": 50, "control": True},
            {"name": "b", "model": args.model, "weight": 50}]}]}))
        rows = {"model": plain, "experiment": via}
        rps: dict[str, list[float]] = {k: [] for k in rows}
        cpu: dict[str, list[float]] = {k: [] for k in rows}
        prefix = f"bench-{uuid.uuid4().hex[:8]}"
        for _ in range(args.repeats):
            for name, bodies in rows.items():
                proc, url = serve(ROOT, args.artifacts, prefix, {"RECSERVE_EXPERIMENTS": str(config)})
                try:
                    wrk(f"{url}/rank", bodies, 2, "POST")
                    before = cpu_s(proc.pid)
                    rate = wrk(f"{url}/rank", bodies, args.seconds, "POST")
                    cpu[name].append((cpu_s(proc.pid) - before) / (rate * args.seconds) * 1e6)
                    rps[name].append(rate)
                finally:
                    proc.terminate()
                    proc.wait(20)
                    forget(prefix)
                print(f"{name}: /rank {rate:.0f} req/s, worker CPU {cpu[name][-1]:.0f} us a /rank", flush=True)
        med = {k: statistics.median(v) for k, v in rps.items()}
        cpu_med = {k: statistics.median(v) for k, v in cpu.items()}
        print(json.dumps({"rps": rps, "cpu_us": cpu, "rps_median": med, "cpu_us_median": cpu_med,
                          "experiment_over_model": {"rps": med["experiment"] / med["model"],
                                                    "cpu": cpu_med["experiment"] / cpu_med["model"]}}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", type=Path, required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--pinned", help="a version folder other than LATEST's (in-process figures)")
    parser.add_argument("--http", action="store_true", help="the warm /rank path of a real server instead")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=6)
    args = parser.parse_args()
    if args.http:
        return http_cost(args)
    if args.pinned is None:
        parser.error("--pinned is needed for the in-process figures")
    from service.config import Settings
    from service.events import UserEvents
    from service.experiments.active import Served
    from service.experiments.assign import bounds
    from service.experiments.config import Arm, Experiment
    from service.experiments.counters import ArmCounts
    from service.metrics import Metrics
    from service.model import load_model
    from service.responses import ranking_json

    settings, metrics = Settings(artifacts=args.artifacts, providers="cpu"), Metrics()
    folder = args.artifacts / args.model
    latest = folder / (folder / "LATEST").read_text().strip()
    start = status()
    one = load_model(latest, settings, metrics, UserEvents(10), {})
    after_latest = status()
    two = load_model(folder / args.pinned, settings, metrics, UserEvents(10), {})
    after_pinned = status()
    experiment = Experiment("e", "salt", (Arm("a", args.model, "LATEST", 50, True), Arm("b", args.model, args.pinned,
                                                                                         50, False)))
    served = Served(experiment, (one, two), bounds([50, 50]), ("e/a", "e/b"))
    models = {args.model: one}
    n = 200_000
    per = lambda stmt: round(min(timeit.repeat(stmt, number=n, repeat=5)) / n * 1e6, 3)  # noqa: E731
    _, choice = served.answer("user-1", "r")
    counts = ArmCounts()
    heads, rows, scores = one.catalog.heads, list(range(1, 21)), np.linspace(1, 0, 20, dtype=np.float32)
    print(json.dumps({
        "memory_mib": {"start": start, "after_latest": after_latest, "after_pinned": after_pinned},
        "files": {"latest": file_bytes(latest), "pinned": file_bytes(folder / args.pinned)},
        "us_per_call": {
            "plain_lookup": per(lambda: models.get(args.model)),
            "experiment_answer": per(lambda: served.answer("user-123456", "req")),
            "arm_counter_add": per(lambda: counts.add("e/a", "impressions")),
            "ranking_json_20": per(lambda: ranking_json("m", "v", heads, rows, scores, [], None, "r" * 32)),
            "ranking_json_20_arm": per(lambda: ranking_json("m", "v", heads, rows, scores, [], None, "r" * 32,
                                                            choice))}}, indent=1))


if __name__ == "__main__":
    main()
