"""Resident memory of one `recserve serve` worker, as the Kubernetes Deployment runs it (deploy/k8s: one worker,
onnxruntime on the CPU with one thread, Redis on), for its memory request and limit.

    python bench/serve_memory.py --artifacts artifacts [--redis-url redis://127.0.0.1:6379/0] [--requests 2000]

Reads VmRSS and VmHWM (peak) of the server process from /proc (Linux) at four points: started on an empty
artifacts folder (the runtime alone); started on --artifacts (every model loaded); after --requests cold /rank
requests per model (a new history each: the user encoder runs, the per-worker user-vector cache fills); after
a reload that loads every model again (copies of the bundles under newer version names: the old and the new
models are both held until the swap). Works on a copy of --artifacts; cache keys use a private prefix,
deleted at the end.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_load import _cleanup, bodies_for, free_port  # noqa: E402


def memory_mib(pid: int) -> dict[str, float]:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {name: round(int(fields[name].split()[0]) / 1024, 1) for name in ("VmRSS", "VmHWM")}


def start(artifacts: Path, port: int, redis_url: str, prefix: str) -> subprocess.Popen:
    env = {**os.environ, "RECSERVE_ARTIFACTS": str(artifacts), "RECSERVE_REDIS_URL": redis_url,
           "RECSERVE_CACHE_PREFIX": prefix, "RECSERVE_PROVIDERS": "cpu", "RECSERVE_INTRA_OP_THREADS": "1",
           "RECSERVE_INTER_OP_THREADS": "1", "RECSERVE_LOG_LEVEL": "warning"}
    proc = subprocess.Popen([sys.executable, "-m", "recserve", "serve", "--port", str(port)], env=env)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("the server did not start")


def newer_copies(artifacts: Path) -> None:
    """Copy each model's LATEST bundle under a later version name and point LATEST at it."""
    for latest in artifacts.glob("*/LATEST"):
        old = latest.parent / latest.read_text().strip()
        new = old.with_name("99991231T235959Z-" + uuid.uuid4().hex[:8])
        shutil.copytree(old, new)
        latest.write_text(new.name + "\n")


def measure(args: argparse.Namespace) -> dict:
    prefix, out = f"bench-memory-{uuid.uuid4().hex[:8]}", {}
    with tempfile.TemporaryDirectory() as tmp:
        empty, artifacts = Path(tmp) / "empty", Path(tmp) / "artifacts"
        empty.mkdir()
        shutil.copytree(args.artifacts, artifacts, ignore=shutil.ignore_patterns("train"))
        port = free_port()
        proc = start(empty, port, args.redis_url, prefix)
        out["runtime alone (no bundle)"] = memory_mib(proc.pid)
        proc.terminate(), proc.wait(30)
        proc = start(artifacts, port, args.redis_url, prefix)
        try:
            url = f"http://127.0.0.1:{port}"
            models = sorted(httpx.get(f"{url}/readyz").json()["models"])
            out["models loaded"] = memory_mib(proc.pid)
            with httpx.Client() as client:
                for model in models:
                    bundle = artifacts / model / (artifacts / model / "LATEST").read_text().strip()
                    for body in bodies_for(bundle, "rank", args.requests, seed=1):
                        client.post(f"{url}/rank", content=body, headers={"content-type": "application/json"})
            out[f"after {args.requests} cold /rank per model"] = memory_mib(proc.pid)
            newer_copies(artifacts)
            report = httpx.post(f"{url}/admin/reload", timeout=600).json()
            assert sorted(report["loaded"]) == models, report
            out["after a reload of every model"] = memory_mib(proc.pid)
        finally:
            proc.terminate()
            proc.wait(30)
            _cleanup(args.redis_url, prefix)
    return {"models": models, "mib": out}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--artifacts", type=Path, required=True)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--requests", type=int, default=2000, help="cold /rank requests per model")
    parser.add_argument("--out", type=Path, help="write the figures here as JSON too")
    args = parser.parse_args()
    result = measure(args)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
