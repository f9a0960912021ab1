"""Instructions per warm /rank and per GET /healthz, in process, counted by callgrind.

    python bench/rank_instructions.py --artifacts artifacts [--models gru4recf] [--requests 100]

The ASGI app is called directly (no HTTP; the in-process cache, no Redis). Each model's /rank bodies are sent
once to warm its caches, then callgrind's counters are dumped after each phase of --requests calls: GET /healthz,
then warm /rank per model. Instruction counts do not move with this VM's 2-3x speed drift, so two checkouts can
be compared runs apart; they do not see cache misses or the kernel, so they are a proxy for time, not a measure
of it. Needs valgrind (`apt-get install valgrind`); Python runs ~50x slower under it: minutes per model.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
UNDER_VALGRIND = "RECSERVE_BENCH_UNDER_CALLGRIND"


async def call(app, method: str, path: str, body: bytes) -> None:
    """One request straight into the ASGI app; raises unless it answers 200."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "", "state": {},
             "headers": [(b"host", b"bench"), (b"content-type", b"application/json"),
                         (b"content-length", str(len(body)).encode())],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    status = []

    async def receive():
        return messages.pop() if messages else {"type": "http.disconnect"}

    async def send(message):
        if message["type"] == "http.response.start":
            status.append(message["status"])

    await app(scope, receive, send)
    if status != [200]:
        raise SystemExit(f"{method} {path} answered {status}")


async def phases(args: argparse.Namespace) -> None:
    """Runs inside valgrind: warm up, then one counter dump per phase."""
    sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
    from serve_load import bodies_for

    from service.app import create_app
    from service.config import Settings

    artifacts = Path(args.artifacts).resolve()
    # a long TTL: under valgrind, warming every model takes longer than the default 300 s
    app = create_app(Settings(artifacts=artifacts, redis_url=None, user_ttl_s=86400, log_level="warning"))

    def dump(label: str) -> None:
        subprocess.run(["callgrind_control", "-d", label, str(os.getpid())], check=True, capture_output=True)

    async with app.router.lifespan_context(app):
        bodies = {}
        for name in args.models:
            bundle = artifacts / name / (artifacts / name / "LATEST").read_text().strip()
            bodies[name] = bodies_for(bundle, "rank", args.requests, seed=1)
            for body in bodies[name]:
                await call(app, "POST", "/rank", body)
        for _ in range(args.requests):
            await call(app, "GET", "/healthz", b"")
        dump("warm-up")
        for _ in range(args.requests):
            await call(app, "GET", "/healthz", b"")
        dump("healthz")
        for name in args.models:
            for body in bodies[name]:
                await call(app, "POST", "/rank", body)
            dump(name)


def totals(out_dir: Path) -> list[int]:
    """The instruction total of each dump, in dump order."""
    found = []
    for path in sorted(out_dir.glob("cg.out.*"), key=lambda p: int(p.suffix[1:])):
        line = next(line for line in path.read_text().splitlines() if line.startswith(("summary:", "totals:")))
        found.append(int(line.split()[1]))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifacts", required=True, help="folder of <model>/LATEST bundles")
    parser.add_argument("--models", nargs="+", default=["bert4rec", "convncf", "gru4recf", "nrms"])
    parser.add_argument("--requests", type=int, default=100, help="requests per phase")
    parser.add_argument("--out", help="also write the figures here as JSON")
    args = parser.parse_args()
    if os.environ.get(UNDER_VALGRIND):
        asyncio.run(phases(args))
        return
    with tempfile.TemporaryDirectory() as tmp:
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/cg.out", sys.executable, __file__,
               "--artifacts", args.artifacts, "--models", *args.models, "--requests", str(args.requests)]
        subprocess.run(cmd, env={**os.environ, UNDER_VALGRIND: "1"}, check=True, stderr=subprocess.DEVNULL)
        counts = totals(Path(tmp))
    labels = ["healthz", *args.models]
    per_request = {label: count / args.requests for label, count in zip(labels, counts[1:])}
    for label, count in per_request.items():
        print(f"{label:10s} {count:12,.0f} instructions per request")
    if args.out:
        Path(args.out).write_text(json.dumps({"requests": args.requests, "per_request": per_request}, indent=2))


if __name__ == "__main__":
    main()
