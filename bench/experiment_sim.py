"""Issue #30's simulation: real MIND impressions replayed against a running service with an experiment of two arms
that differ in quality, clicks drawn from a position-bias model, and the question "which arm is better?"
answered by an A/B split and by team-draft interleaving, each after how many impressions.

    python bench/experiment_sim.py --mind ../shared/data/mind --artifacts ARTIFACTS --model nrms \
        --good VERSION --bad VERSION [--day 11/13/2019] [--passes 10] [--seeds 5] [--out FILE.json]

`ARTIFACTS/<model>/<good>` and `<bad>`: two bundles of one news model (here NRMS trained 4 epochs on 11/9-11/12,
and the same model after 10 training steps: a release gone wrong). One uvicorn worker serves them through two
experiments of one file: `ab` (50/50, `good` the control) and `il` (the same two arms, interleaved).

For each impression of the day (MIND's behaviors.tsv: user, history, candidates with their logged clicks), in
a shuffled order, the script asks POST /rank with the experiment as `model`, the user, the logged history
and candidates. The "user" then examines rank r with probability 1/r (the position-based model, eta 1) and
clicks an examined item when the log says they clicked it; the clicks are posted as attributed events
(`request_id`). Every `--check-every` impressions it reads GET /experiments/NAME: for `ab`, whether the bad
arm's lift interval (95%) excludes zero; for `il`, whether the sign test's p-value is under 0.05. A pass is the
day once; users keep their arm across passes (sticky assignment), the click draws are new. The figure is the
number of impressions after which the answer is right and stays right to the end; `--seeds` repeats it.

Then a canary run on a second server: experiment `cn`, the good version as control (90%) and the bad one as a
canary (10%, limits `--canary-limits`), the canary's rankings made to fail for `--fault-share` of requests by
bench/fault/sitecustomize.py (an injected fault: the service has no such switch). The day is replayed until the
canary is rolled back; the figures are how many requests the canary answered and failed before, and how long
after its first failure every request of its users was answered by the control.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from state_cost import ROOT, forget, serve  # noqa: E402

sys.path.insert(0, str(ROOT))


def impressions(behaviors: Path, day: str) -> list[tuple[str, list[str], list[str], set[str]]]:
    """(user, history, candidates, clicked) of each impression logged on `day` (M/D/YYYY) with a click."""
    found = []
    for line in behaviors.read_text().splitlines():
        if not line.strip():
            continue
        _, user, when, history, shown = line.split("\t")
        if not when.startswith(day + " "):
            continue
        pairs = [p.rsplit("-", 1) for p in shown.split()]
        clicked = {n for n, label in pairs if label == "1"}
        if clicked:
            found.append((user, history.split(), [n for n, _ in pairs], clicked))
    return found


def experiments_file(folder: Path, model: str, good: str, bad: str) -> Path:
    arms = [{"name": "good", "model": model, "version": good, "weight": 50, "control": True},
            {"name": "bad", "model": model, "version": bad, "weight": 50}]  # interleaved: weights unused
    path = folder / "experiments.json"
    path.write_text(json.dumps({"experiments": [{"name": "ab", "arms": arms},
                                                {"name": "il", "interleave": True, "arms": arms}]}))
    return path


def decided(name: str, body: dict) -> bool:
    """Whether the readout names the good arm better, at 95%."""
    if name == "ab":
        interval = body["arms"]["bad"].get("lift_interval")
        return interval is not None and interval[1] < 0
    il = body["interleaving"]  # the non-control arm ("bad") against the control ("good")
    return il["p_value"] is not None and il["p_value"] < 0.05 and il["wins"] < il["losses"]


async def replay(client: httpx.AsyncClient, name: str, day: list, passes: int, check_every: int, seed: int,
                 concurrency: int) -> dict:
    """Impressions (and clicks) until the end; the readout after every `check_every` impressions."""
    rng = random.Random(seed)
    tag = uuid.uuid4().hex[:6]  # fresh users per run: assignment by (salt, user) is the same, counters are new
    checks, shown, clicks = [], 0, 0
    limit = asyncio.Semaphore(concurrency)

    async def one(user: str, history: list[str], candidates: list[str], clicked: set[str]):
        async with limit:
            r = await client.post("/rank", json={"model": name, "user_id": f"{user}-{tag}", "history": history,
                                                 "candidates": candidates})
        r.raise_for_status()
        body = r.json()
        hits = [x["item_id"] for x in body["results"]
                if x["item_id"] in clicked and rng.random() < 1.0 / x["rank"]]
        return user, body["request_id"], hits

    for _ in range(passes):
        order = day[:]
        rng.shuffle(order)
        for start in range(0, len(order), check_every):
            answers = await asyncio.gather(*(one(*imp) for imp in order[start:start + check_every]))
            await asyncio.sleep(0.15)  # the answers' summaries reach the attribution with the recorder's flush
            for user, request_id, hits in answers:
                if hits:
                    r = await client.post(f"/users/{user}-{tag}/events",
                                          json={"items": hits, "request_id": request_id})
                    r.raise_for_status()
                    clicks += len(hits)
            shown += len(answers)
            await asyncio.sleep(0.15)  # the counters flush with the recorder
            body = (await client.get(f"/experiments/{name}")).json()
            checks.append({"impressions": shown, "clicks": clicks, "decided": decided(name, body)})
    settled = next((c["impressions"] for i, c in enumerate(checks) if all(x["decided"] for x in checks[i:])), None)
    first = next((c["impressions"] for c in checks if c["decided"]), None)
    return {"experiment": name, "seed": seed, "impressions": shown, "clicks": clicks, "first_decided": first,
            "decided_for_good": settled, "final": body}


async def run(args, url: str, seed: int, day: list) -> list[dict]:
    """One seed: the A/B experiment's replay, then the interleaved one's (their counters start at zero)."""
    results = []
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        for name in ("ab", "il"):
            t0 = time.perf_counter()
            out = await replay(client, name, day, args.passes, args.check_every, seed, args.concurrency)
            out["seconds"] = round(time.perf_counter() - t0, 1)
            print(json.dumps({k: v for k, v in out.items() if k != "final"}), flush=True)
            results.append(out)
    return results


async def canary_run(url: str, day: list, concurrency: int) -> dict:
    """Replay until the canary arm is rolled back (GET /readyz names it), counting its answers and failures."""
    tag = uuid.uuid4().hex[:6]
    answered = failed = control = 0
    first_failure = rolled_at = None
    limit = asyncio.Semaphore(concurrency)
    # no kept-alive connections: the server closes a connection after an answer that ended in an exception
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=httpx.Limits(max_keepalive_connections=0)) as client:
        async def one(user, history, candidates, _clicked):
            nonlocal answered, failed, control, first_failure
            async with limit:
                r = await client.post("/rank", json={"model": "cn", "user_id": f"{user}-{tag}", "history": history,
                                                     "candidates": candidates})
            if r.status_code == 500:
                failed += 1
                first_failure = first_failure or time.monotonic()
            elif r.json()["arm"] == "canary":
                answered += 1
            else:
                control += 1

        start = time.monotonic()
        for chunk in range(0, 10 * len(day), 50):
            await asyncio.gather(*(one(*day[i % len(day)]) for i in range(chunk, chunk + 50)))
            ready = (await client.get("/readyz")).json()
            if "cn/canary" in ready.get("rollbacks", {}):
                rolled_at = time.monotonic()
                reason = ready["rollbacks"]["cn/canary"]
                break
        else:
            reason = None
        after = {"failed": 0, "canary": 0, "control": 0}
        for user, history, candidates, _ in day[:200]:  # the canary's users now: all answered by the control
            r = await client.post("/rank", json={"model": "cn", "user_id": f"{user}-{tag}", "history": history,
                                                 "candidates": candidates})
            arm = None if r.status_code == 500 else r.json()["arm"]
            after["failed" if arm is None else "canary" if arm == "canary" else "control"] += 1
    return {"canary_answered": answered, "canary_failed": failed, "control_answered": control, "reason": reason,
            "seconds_from_first_failure": round(rolled_at - first_failure, 2) if rolled_at and first_failure else None,
            "seconds_from_start": round(rolled_at - start, 2) if rolled_at else None, "after_rollback": after}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mind", type=Path, required=True, help="MIND folder (behaviors.tsv)")
    p.add_argument("--artifacts", type=Path, required=True)
    p.add_argument("--model", default="nrms")
    p.add_argument("--good", required=True, help="version folder of the better bundle")
    p.add_argument("--bad", required=True, help="version folder of the worse bundle")
    p.add_argument("--day", default="11/13/2019")
    p.add_argument("--passes", type=int, default=10)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--check-every", type=int, default=100)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--fault-share", type=float, default=0.3, help="share of the canary's requests that fail")
    p.add_argument("--canary-limits", default='{"window_s": 60, "min_requests": 30, "max_error_share": 0.05}')
    p.add_argument("--only-canary", action="store_true", help="the canary run alone")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        config = experiments_file(Path(tmp), args.model, args.good, args.bad)
        day = impressions(args.mind / "behaviors.tsv", args.day)
        print(f"{len(day)} impressions with a click on {args.day}", file=sys.stderr, flush=True)
        results = []
        for seed in range(0 if args.only_canary else args.seeds):  # a server and counters of its own per seed
            prefix = f"sim-{uuid.uuid4().hex[:8]}"
            proc, url = serve(ROOT, args.artifacts, prefix, {"RECSERVE_EXPERIMENTS": str(config),
                                                             "RECSERVE_FEEDBACK_FLUSH_S": "0.05"})
            try:
                results += asyncio.run(run(args, url, seed, day))
            finally:
                proc.terminate()
                proc.wait(20)
                forget(prefix)
        canary_config = Path(tmp) / "canary.json"
        canary_config.write_text(json.dumps({"experiments": [{"name": "cn", "arms": [
            {"name": "stable", "model": args.model, "version": args.good, "weight": 90, "control": True},
            {"name": "canary", "model": args.model, "version": args.bad, "weight": 10,
             "canary": json.loads(args.canary_limits)}]}]}))
        prefix = f"sim-{uuid.uuid4().hex[:8]}"
        proc, url = serve(ROOT, args.artifacts, prefix, {
            "RECSERVE_EXPERIMENTS": str(canary_config), "PYTHONPATH": f"{ROOT}:{ROOT / 'bench' / 'fault'}",
            "RECSERVE_BENCH_FAULT": f"{args.bad}:error:{args.fault_share}"})
        try:
            canary = asyncio.run(canary_run(url, day, args.concurrency))
        finally:
            proc.terminate()
            proc.wait(20)
            forget(prefix)
        print(json.dumps({"canary": canary}), flush=True)
    summary = {"canary": canary}
    for name in ("ab", "il") if results else ():
        decided = [r["decided_for_good"] for r in results if r["experiment"] == name]
        summary[name] = {"decided_for_good": decided,
                         "median": statistics.median([d if d is not None else float("inf") for d in decided])}
    print(json.dumps(summary))
    if args.out:
        args.out.write_text(json.dumps({"summary": summary, "runs": results}, indent=1))


if __name__ == "__main__":
    main()
