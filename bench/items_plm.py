"""POST /items latency with one new title, over HTTP, for a MiniLM (plm_nrms) bundle. A measurement, not a test.

    flock /tmp/recserve-heavy.lock .venv/bin/python bench/items_plm.py --run bench/out/artifacts/plm_nrms/train \
        --catalog 2000 --titles ../shared/data/mind/news.tsv --requests 300

Exports the trained model of --run (best.pt + bundle_data/) with its first --catalog news only (until bundles
carry precomputed catalog vectors the service encodes the whole catalog at start: minutes for MIND's 51k with
MiniLM; the catalog's size does not enter an /items request), starts uvicorn on it (one worker, in-process
cache, CPU; the time to /readyz is reported), then posts --requests /items
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


def export_small(run_dir: Path, n: int, artifacts: Path) -> Path:
    """The run's best model and bundle data cut to the first n news (histories keep those news only)."""
    import torch

    from bundle.data import BundleData
    from models.registry import build_model
    from training.bundle_data import load_bundle_data
    from training.export import export_bundle

    state = torch.load(run_dir / "best.pt", weights_only=True)
    config = {**state["model_config"], "n_news": n + 1}
    model = build_model("plm_nrms", config)
    weights = {k: v for k, v in state["model"].items() if k not in ("input_ids", "attention_mask")}
    model.load_state_dict(weights, strict=False)
    model.set_titles(state["model"]["input_ids"][: n + 1], state["model"]["attention_mask"][: n + 1])
    data = load_bundle_data(run_dir / "bundle_data")
    keep = set(data.items[:n])
    small = BundleData(items=data.items[:n], item_inputs={k: v[:n] for k, v in data.item_inputs.items()},
                       max_history=data.max_history, tokenizer=data.tokenizer,
                       histories={u: [i for i in h if i in keep] for u, h in data.histories.items()},
                       fallback_kind=data.fallback_kind, data_fingerprint=data.data_fingerprint,
                       fallback=np.array([i for i in data.fallback if i <= n], dtype=np.int32))
    return export_bundle(model, small, artifacts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="a plm_nrms run folder (best.pt, bundle_data/)")
    parser.add_argument("--catalog", type=int, default=2000, help="news of the exported catalog")
    parser.add_argument("--artifacts", type=Path, default=ROOT / "bench" / "out" / "items_plm_artifacts")
    parser.add_argument("--model", default="plm_nrms")
    parser.add_argument("--titles", type=Path, required=True, help="a MIND news.tsv to take titles from")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    export_small(args.run, args.catalog, args.artifacts)
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
