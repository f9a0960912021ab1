"""GET /healthz latency while one POST /items of 1,000 news encodes (issue #19: /items used to block the event
loop, and /healthz waited for the whole encoding). A measurement, not a test.

    python bench/items_healthz.py --artifacts artifacts [--model nrms] [--runs 3] [--items 1000] [--idle]

Starts uvicorn (one worker, in-process cache, CPU) on the bundles under --artifacts, then per run posts
--items news with random titles from the tokenizer's words in one thread while another polls /healthz every
2 ms until the post returns; prints the /items time and the /healthz median, p95 and max. --idle first
polls /healthz for 3 s with nothing else running: the floor of this machine. Client and server share the
machine's cores, so the figures include its load.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def summary(latencies: list[float]) -> str:
    ms = sorted(x * 1000 for x in latencies)
    return (f"/healthz n={len(ms)} median {ms[len(ms) // 2]:.1f} ms, p95 {ms[int(len(ms) * 0.95)]:.1f} ms, "
            f"max {ms[-1]:.1f} ms")


def poll(client: httpx.Client, url: str, until: threading.Event | float) -> list[float]:
    latencies = []
    while not (until.is_set() if isinstance(until, threading.Event) else time.perf_counter() > until):
        start = time.perf_counter()
        client.get(url).raise_for_status()
        latencies.append(time.perf_counter() - start)
        time.sleep(0.002)
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--artifacts", type=Path, required=True)
    parser.add_argument("--model", default="nrms")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--idle", action="store_true")
    args = parser.parse_args()
    folder = args.artifacts / args.model
    bundle = folder / (folder / "LATEST").read_text().strip()
    words = [w for w in json.loads((bundle / "tokenizer.json").read_text())["vocab"] if w.isalpha()]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RECSERVE_ARTIFACTS": str(args.artifacts.resolve()),
           "RECSERVE_PROVIDERS": "cpu", "RECSERVE_REDIS_URL": "", "RECSERVE_LOG_LEVEL": "warning",
           "RECSERVE_MAX_NEW_ITEMS": str(max(args.items, 1000))}
    server = subprocess.Popen([sys.executable, "-m", "uvicorn", "service.app:app", "--port", str(port),
                               "--log-level", "warning"], env=env)
    try:
        with httpx.Client(timeout=120) as client:
            for _ in range(1200):
                try:
                    if client.get(base + "/readyz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
            else:
                raise SystemExit("the server never became ready")
            if args.idle:
                print(f"idle: {summary(poll(client, base + '/healthz', time.perf_counter() + 3))}")
            rng = random.Random(0)
            for run in range(args.runs):
                items = [{"item_id": f"bench-{run}-{k}", "title": " ".join(rng.choices(words, k=rng.randint(8, 16)))}
                         for k in range(args.items)]
                done, answer = threading.Event(), {}

                def post(items=items, done=done, answer=answer) -> None:
                    start = time.perf_counter()
                    body = {"model": args.model, "items": items}
                    with httpx.Client(timeout=120) as poster:
                        answer["status"] = poster.post(base + "/items", json=body).status_code
                    answer["s"] = time.perf_counter() - start
                    done.set()

                thread = threading.Thread(target=post)
                thread.start()
                latencies = poll(client, base + "/healthz", done)
                thread.join()
                print(f"run {run}: /items {answer['status']} in {answer['s'] * 1000:.0f} ms; {summary(latencies)}")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
