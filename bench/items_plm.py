"""POST /items latency with one new title, over HTTP, for a MiniLM (plm_nrms) bundle. A measurement, not a test.

    flock /tmp/recserve-heavy.lock .venv/bin/python bench/items_plm.py --artifacts bench/out/artifacts \
        --titles ../shared/data/mind/news.tsv --requests 300

Starts uvicorn (one worker, in-process cache, CPU) on --artifacts (time to /readyz reported: without a
precomputed catalog file the service encodes the whole catalog at start), then posts --requests /items
requests one after the other, each one new news whose title is a real MIND title (not in the catalog: a
numbered id), and after each checks with /rank that the id is rankable. Reports the /items p50, p99, max.
Client and server share the machine's cores, so the figures include the client.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--artifacts", type=Path, required=True)
    parser.add_argument("--model", default="plm_nrms")
    parser.add_argument("--titles", type=Path, required=True, help="a MIND news.tsv to take titles from")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    titles = [line.split("\t")[3] for line in args.titles.read_text(encoding="utf-8").splitlines() if line.strip()]
    random.seed(0)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RECSERVE_ARTIFACTS": str(args.artifacts.resolve()),
           "RECSERVE_PROVIDERS": "cpu", "RECSERVE_REDIS_URL": "", "RECSERVE_LOG_LEVEL": "warning",
           "RECSERVE_MAX_ADDED_ITEMS": str(args.requests + 10)}
    started = time.perf_counter()
    server = subprocess.Popen([sys.executable, "-m", "uvicorn", "service.app:app", "--port", str(port),
                               "--log-level", "warning"], env=env)
    report: dict = {}
    try:
        with httpx.Client(timeout=600) as client:
            while True:
                try:
                    if client.get(base + "/readyz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if server.poll() is not None:
                    raise SystemExit("the server exited")
                time.sleep(0.2)
            report["ready_seconds"] = time.perf_counter() - started
            user = None
            latencies = []
            for i in range(args.requests + 10):
                item = {"item_id": f"NEW{i}", "title": random.choice(titles)}
                t0 = time.perf_counter()
                r = client.post(base + "/items", json={"model": args.model, "items": [item]})
                elapsed = time.perf_counter() - t0
                r.raise_for_status()
                if i >= 10:  # the first requests warm up the client and server
                    latencies.append(elapsed * 1e3)
                rank = client.post(base + "/rank", json={"model": args.model, "history": ["NEW0"],
                                                         "candidates": [item["item_id"]]})
                rank.raise_for_status()
                assert rank.json()["unknown"] == [], rank.text
            ms = np.array(latencies)
            report["items_one_title_ms"] = {"n": len(ms), "p50": float(np.percentile(ms, 50)),
                                            "p99": float(np.percentile(ms, 99)), "max": float(ms.max())}
    finally:
        server.terminate()
        server.wait(30)
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
