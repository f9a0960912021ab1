"""Catalog size against start-up, memory, /recommend latency and recall (issue #21). A measurement, not a test.

    python bench/catalog_scale.py --sizes 10000 100000 1000000 --out bench/out/catalog_scale.json

For each size N: an untrained BERT4Rec bundle of N items and 20,000 users' histories, its item embeddings
drawn like a trained model's (clustered; an untrained model's i.i.d. noise is the case no nearest-neighbour
index handles, docs/benchmarks.md, section 6.1), exported by the project's own code (bench/ray_recommend.py's
`build_bundle`, reused while its size matches), served by one
uvicorn worker with Redis on (a fresh key prefix: an empty cache) and the default settings (the index serves
/recommend from RECSERVE_RETRIEVAL_MIN_ITEMS bundle items on). Measured:

  start s        process start to the first 200 of /readyz
  RSS / PSS MiB  of the worker once warm (/proc/<pid>/smaps_rollup); PSS splits shared pages between sharers
  2nd adds MiB   a second worker on the same bundle: its private memory (USS), what the machine pays for it
  warm p50/p99   /recommend k=10 for 200 users named by user_id (their user vectors cached), one at a time,
                 from wrk (-c1): the server's latency; "py" columns: the same from a Python client (httpx),
                 which adds ~0.6 ms to a GET and ~2 ms to a POST of its own (docs/benchmarks.md 6.6)
  cold p50/p99   /recommend k=10 with a new 20-item history each (the user encoder runs), one at a time; wrk
                 sends each body once (the run fails if it would send one twice, which would be warm);
                 "served p99 <" the bucket of the service's own latency histogram that holds its 99th percentile
                 (time inside the app; wrk's figure adds the sockets, the event loop and the collector)
  c16 ratio      /recommend (warm bodies) req/s over /healthz req/s, wrk at concurrency 16: the median of
                 three ratios, each of a /healthz run and the /recommend run after it (rates: medians)
  recall@10      the served top 10 (index) against the exact top 10 of the same user vector, 200 users

Run it alone on the machine (wrk and the server share its 2 cores).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from ray_recommend import build_bundle  # noqa: E402
from serve_load import load_wrk  # noqa: E402
from state_cost import forget, free_port, wrk  # noqa: E402

USERS = 20_000
PAIRS = 3  # /healthz and /recommend throughput runs, in turn
COLD_BODIES = 400 + 12_000  # 400 for the Python client, the rest for wrk (~1,000 cold requests a second at 1M)


def memory_mib(pid: int) -> dict[str, float]:
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, value = line.split(":", 1)
        fields[name] = int(value.split()[0]) / 1024
    return {"rss": round(fields["Rss"], 1), "pss": round(fields["Pss"], 1),
            "uss": round(fields["Private_Clean"] + fields["Private_Dirty"], 1)}


def serve(artifacts: Path, prefix: str) -> tuple[subprocess.Popen, str, float]:
    port = free_port()
    env = {**os.environ, "RECSERVE_ARTIFACTS": str(artifacts), "RECSERVE_REDIS_URL": "redis://127.0.0.1:6379/0",
           "RECSERVE_CACHE_PREFIX": prefix, "RECSERVE_LOG_LEVEL": "warning", "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "service.app:app", "--port", str(port)], cwd=ROOT,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    while True:
        try:
            if httpx.get(f"{url}/readyz").status_code == 200:
                return proc, url, time.perf_counter() - start
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.perf_counter() - start > 300:
            raise SystemExit(f"the server on {artifacts} did not get ready")
        time.sleep(0.05)


def latencies(http: httpx.Client, bodies: list[dict]) -> list[float]:
    out = []
    for body in bodies:
        start = time.perf_counter()
        response = http.post("/recommend", json=body)
        out.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200, response.text
    return out


def served_latencies(url: str) -> dict[float, float]:
    """The service's own /recommend latency histogram (cumulative counts by upper bound, seconds)."""
    counts = {}
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith("recserve_request_seconds_bucket") and 'route="/recommend"' in line:
            bound = line.split('le="')[1].split('"')[0]
            counts[float("inf") if bound == "+Inf" else float(bound)] = float(line.rsplit(" ", 1)[1])
    return counts


def served_p99_bound(counts: dict[float, float]) -> float:
    """The histogram bucket (ms, its upper bound) that holds the 99th percentile."""
    total = counts[float("inf")]
    return next(round(le * 1000, 1) for le in sorted(counts) if counts[le] >= 0.99 * total)


def pct(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 2)


def recall(bundle_dir: Path, users: list[str]) -> float:
    """The indexed top 10 against the exact top 10 of the same user vectors, in process."""
    from bundle.reader import resolve_latest
    from service import retrieval
    from service.batch import load_for_batch
    from service.ranking import resolve_user

    model = load_for_batch(resolve_latest(bundle_dir))
    if model.index is None:
        return 1.0
    hits = 0
    for user_id in users:
        user = resolve_user(model, user_id, None, 10 * model.max_history)
        vector = model.encode_user(user.window, None)
        drop = np.asarray(user.seen, dtype=np.int64)
        exact = retrieval.exact(model, vector, 10, drop, None)[0]
        found = retrieval.indexed(model, vector, 10, drop, None, 0)[0]
        hits += len(set(exact.tolist()) & set(found.tolist()))
    return round(hits / (10 * len(users)), 4)


def measure(n_items: int, work: Path, seconds: int) -> dict:
    folder = work / f"n{n_items}"
    build_bundle(folder, USERS, n_items, clustered=True)
    artifacts = folder
    rng = random.Random(0)
    users = [f"u{rng.randint(1, USERS)}" for _ in range(200)]
    warm = [{"model": "bert4rec", "user_id": u, "k": 10} for u in users]
    cold = [{"model": "bert4rec", "history": [f"i{rng.randint(1, n_items)}" for _ in range(20)], "k": 10}
            for _ in range(COLD_BODIES)]
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    second = None
    proc, url, started = serve(artifacts, prefix)
    try:
        with httpx.Client(base_url=url) as http:
            latencies(http, warm)  # user vectors cached
            warm_ms = latencies(http, warm * 5)
            cold_ms = latencies(http, cold[:400])
        warm_c1 = load_wrk(f"{url}/recommend", "POST", [json.dumps(b).encode() for b in warm], 1, seconds)
        before = served_latencies(url)
        cold_c1 = load_wrk(f"{url}/recommend", "POST", [json.dumps(b).encode() for b in cold[400:]], 1, seconds)
        cold_served = {le: n - before.get(le, 0) for le, n in served_latencies(url).items()}
        assert cold_c1["requests"] <= cold_c1["distinct_bodies"], "too few cold bodies: raise COLD_BODIES"
        with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
            f.write("".join(json.dumps(b) + "\n" for b in warm))
        # In turn, PAIRS times: this VM's speed drifts within a minute (/healthz alone ranged 3,000-6,000 req/s
        # in one session), so each ratio is taken between neighbours, and the median of them reported.
        pairs = [(wrk(f"{url}/healthz", None, seconds, "GET"), wrk(f"{url}/recommend", Path(f.name), seconds, "POST"))
                 for _ in range(PAIRS)]
        healthz, rate = (float(np.median([pair[i] for pair in pairs])) for i in (0, 1))
        ratio = float(np.median([r / h for h, r in pairs]))
        first = memory_mib(proc.pid)
        second, second_url, _ = serve(artifacts, prefix)
        with httpx.Client(base_url=second_url) as http:
            latencies(http, warm[:50])
        added = memory_mib(second.pid)
    finally:
        for p in (proc, second):
            if p is not None:
                p.terminate()
                p.wait(30)
        forget(prefix)
    row = {"items": n_items, "bundle_mb": round(sum(p.stat().st_size for p in (folder / "bert4rec").rglob("*")
                                                     if p.is_file()) / 1e6),
           "start_s": round(started, 2), "rss_mib": first["rss"], "pss_mib": first["pss"],
           "second_adds_uss_mib": added["uss"], "second_pss_mib": added["pss"],
           "warm_p50_ms": warm_c1["p50_ms"], "warm_p99_ms": warm_c1["p99_ms"],
           "cold_p50_ms": cold_c1["p50_ms"], "cold_p99_ms": cold_c1["p99_ms"],
           "cold_served_p99_under_ms": served_p99_bound(cold_served),
           "py_warm_p50_ms": pct(warm_ms, 50), "py_warm_p99_ms": pct(warm_ms, 99),
           "py_cold_p50_ms": pct(cold_ms, 50), "py_cold_p99_ms": pct(cold_ms, 99),
           "healthz_rps": round(healthz), "recommend_rps": round(rate), "c16_ratio": round(ratio, 3),
           "c16_ratios": [round(r / h, 3) for h, r in pairs],
           "recall_at_10": recall(folder / "bert4rec", users[:200]), **effort(folder / "bert4rec")}
    print(json.dumps(row), flush=True)
    return row


def effort(model_dir: Path) -> dict:
    """The search effort export calibrated for this bundle, and the recall it measured on its sample."""
    info = json.loads((model_dir / (model_dir / "LATEST").read_text().strip() / "manifest.json").read_text())["index"]
    return {"expansion": info.get("expansion_search"), "export_recall_at_10": info.get("recall_at_10")}


def markdown(rows: list[dict]) -> str:
    head = ("| items | bundle MB | start s | RSS MiB | PSS MiB | 2nd worker adds (USS) MiB | warm p50 / p99 ms "
            "| cold p50 / p99 ms | py warm p50 / p99 | py cold p50 / p99 | /recommend c16 / /healthz "
            "| recall@10 (effort; export's) |\n"
            "|---:|---:|---:|---:|---:|---:|---|---|---|---|---:|---:|")
    lines = [f"| {r['items']:,} | {r['bundle_mb']} | {r['start_s']} | {r['rss_mib']} | {r['pss_mib']} "
             f"| {r['second_adds_uss_mib']} | {r['warm_p50_ms']} / {r['warm_p99_ms']} | {r['cold_p50_ms']} / "
             f"{r['cold_p99_ms']} (served p99 < {r['cold_served_p99_under_ms']}) | {r['py_warm_p50_ms']} / {r['py_warm_p99_ms']} | {r['py_cold_p50_ms']} / "
             f"{r['py_cold_p99_ms']} | {r['c16_ratio']} ({r['recommend_rps']}/{r['healthz_rps']}) | {r['recall_at_10']} "
             f"({r['expansion']}; {r['export_recall_at_10']}) |"
             for r in rows]
    return "\n".join([head, *lines])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    p.add_argument("--work", type=Path, default=ROOT / "bench" / "out" / "catalog_scale")
    p.add_argument("--seconds", type=int, default=5)
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    rows = [measure(n, args.work, args.seconds) for n in args.sizes]
    print(markdown(rows))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
