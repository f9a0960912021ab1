"""Bulk scoring throughput (issue #23): `recserve recommend`'s one-process path against its Ray engine with 1 and
2 actors, on an untrained BERT4Rec bundle (throughput does not depend on the weights). A measurement, not a test.

    python bench/ray_recommend.py --out bench/out/ray_recommend.json [--cases ml1m catalog1m] [--repeats 1]
    python bench/ray_recommend.py --cases custom --users 200 --items 1000      # a quick check that it runs

Cases: `ml1m`, MovieLens-1M's size (6,040 users, 3,706 items, batch 256); `catalog1m`, a 1,000,000-item catalog
(2,000 users, batch 64: a batch's score matrix is batch x catalog floats, 256 MB at 64); `custom`, --users and
--items (batch --batch-size). Each user has a random history of 20-200 items (the model reads its last 50).
Bundles are exported once into --work (default bench/out/ray_recommend/) and reused while their size matches.

Each engine runs in this process, as the command runs it, k=10, output kept in memory (no file written):
  local       service.batch.load_for_batch, then recommend_users over all users
  ray xN      service.batch_ray.recommend_ray with N actors of cores/N CPUs each (onnxruntime threads alike), on a
              local Ray started once for the whole run (its start-up is printed, not counted)
"total s" counts everything else: actor start, bundle load (catalog encoding), scoring. "first s" is the time
to the first record (start-up, load, the first batch); "users/s after first" the rate from then on, the steady
rate of the pool. Every engine's records are checked to equal the one-process path's. Run it alone on the
machine: the figures are the machine's cores shared by the engines' threads.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import random
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CASES = {"ml1m": (6040, 3706, 256), "catalog1m": (2000, 1_000_000, 64)}
K = 10


def build_bundle(folder: Path, n_users: int, n_items: int, seed: int = 0, clustered: bool = False) -> Path:
    """An untrained BERT4Rec (the defaults: 2 layers, hidden 64, 50-item history) over n_items, users u1..uN.
    `clustered`: item embeddings and output biases drawn like a trained model's (bench/ann_choice.py's
    `clustered`: a mixture around 1,000 centres, skewed biases) instead of the initialisation's i.i.d. noise,
    for measurements where the geometry matters (nearest-neighbour recall)."""
    meta = {"users": n_users, "items": n_items, "seed": seed, **({"clustered": True} if clustered else {})}
    if (folder / "meta.json").is_file() and json.loads((folder / "meta.json").read_text()) == meta:
        return folder / "bert4rec"
    import torch

    from bundle.data import BundleData
    from models.registry import recipe
    from training.export import export_bundle

    shutil.rmtree(folder, ignore_errors=True)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    items = [f"i{i}" for i in range(1, n_items + 1)]
    histories = {f"u{u}": [items[i] for i in rng.integers(0, n_items, rng.integers(20, 201))]
                 for u in range(1, n_users + 1)}
    r = recipe("bert4rec")
    model = r.model(r.config(n_items=n_items + 1)).eval()
    if clustered:
        from ann_choice import clustered as draw

        vectors = torch.from_numpy(draw(n_items, model.cfg.hidden_size, seed)[0])
        with torch.no_grad():  # rows 1..N: embeddings and their output bias (the vector's last column)
            model.item_embedding.weight[1:n_items + 1] = vectors[1:, :-1]
            model.output_bias[1:n_items + 1] = vectors[1:, -1]
    data = BundleData(items=items, item_inputs={"item_idx": np.arange(1, n_items + 1, dtype=np.int64)},
                      max_history=model.cfg.max_seq_length, histories=histories,
                      fallback=np.arange(1, min(n_items, 1000) + 1, dtype=np.int32), fallback_kind="popularity")
    start = time.perf_counter()
    export_bundle(model, data, folder, parity=False)
    print(f"  exported {n_items:,}-item bundle in {time.perf_counter() - start:.1f} s", flush=True)
    (folder / "meta.json").write_text(json.dumps(meta))
    return folder / "bert4rec"


def timed(records) -> tuple[list[dict], float, float]:
    """Drain `records`; returns them, the seconds to the first one and the seconds in all."""
    start = time.perf_counter()
    out, first = [], None
    for record in records:
        if first is None:
            first = time.perf_counter() - start
        out.append(record)
    return out, first or 0.0, time.perf_counter() - start


def run_local(bundle: Path, users: list[str], batch_size: int) -> tuple[list[dict], float, float]:
    from service.batch import load_for_batch, recommend_users

    def records():
        yield from recommend_users(load_for_batch(bundle), users, K, batch_size)
    return timed(records())


def run_ray(bundle: Path, users: list[str], batch_size: int, actors: int, cores: int):
    from service.batch_ray import recommend_ray

    return timed(recommend_ray(bundle, users, K, batch_size, actors=actors, cpus_per_actor=cores / actors))


def check_same(want: list[dict], got: list[dict], what: str) -> None:
    """The one-process path's users in its order, each with its scores (to float tolerance: onnxruntime and BLAS
    may round differently with another thread count); items may swap only between near-equal scores."""
    if [r["user_id"] for r in got] != [r["user_id"] for r in want]:
        raise SystemExit(f"{what}: users differ from the one-process path's, or their order")
    swapped = 0
    for g, w in zip(got, want):
        gs, ws = [x["score"] for x in g["results"]], [x["score"] for x in w["results"]]
        if len(gs) != len(ws) or not np.allclose(gs, ws, rtol=1e-4, atol=1e-5):
            raise SystemExit(f"{what}: user {w['user_id']}'s scores differ from the one-process path's")
        swapped += [x["item_id"] for x in g["results"]] != [x["item_id"] for x in w["results"]]
    if swapped:
        print(f"  {what}: {swapped} users' items in another order among near-equal scores", flush=True)


def row(case: str, n_users: int, n_items: int, batch: int, engine: str, first: float, total: float) -> dict:
    return {"case": case, "users": n_users, "items": n_items, "batch_size": batch, "engine": engine,
            "first_s": round(first, 2), "total_s": round(total, 2), "users_per_s": round(n_users / total, 1),
            "users_per_s_after_first": round((n_users - min(batch, n_users)) / max(total - first, 1e-9), 1)}


def markdown(rows: list[dict]) -> str:
    lines = ["| case | users | items | batch | engine | first s | total s | users/s | users/s after first |",
             "|---|---:|---:|---:|---|---:|---:|---:|---:|"]
    lines += [f"| {r['case']} | {r['users']:,} | {r['items']:,} | {r['batch_size']} | {r['engine']} | {r['first_s']} "
              f"| {r['total_s']} | {r['users_per_s']:,} | {r['users_per_s_after_first']:,} |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", choices=[*CASES, "custom"], default=list(CASES))
    parser.add_argument("--users", type=int, default=200, help="custom case: users")
    parser.add_argument("--items", type=int, default=1000, help="custom case: items")
    parser.add_argument("--batch-size", type=int, default=256, help="custom case: users per batch")
    parser.add_argument("--actors", type=int, nargs="+", default=[1, 2], help="Ray pool sizes (default 1 2)")
    parser.add_argument("--repeats", type=int, default=1, help="runs of every engine; the fastest is kept")
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / "out" / "ray_recommend")
    parser.add_argument("--out", type=Path, default=None, help="JSON of the rows")
    parser.add_argument("--md", type=Path, default=None, help="the markdown table, also printed")
    args = parser.parse_args()
    cases = {**CASES, "custom": (args.users, args.items, args.batch_size)}
    cores = os.cpu_count() or 1

    import ray

    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    start = time.perf_counter()
    ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    print(f"local Ray with {cores} CPUs started in {time.perf_counter() - start:.1f} s", flush=True)
    rows = []
    try:
        for case in args.cases:
            n_users, n_items, batch = cases[case]
            print(f"{case}: {n_users:,} users, {n_items:,} items, batch {batch}", flush=True)
            bundle = build_bundle(args.work / f"{case}-{n_users}x{n_items}", n_users, n_items)
            users = [f"u{u}" for u in random.Random(0).sample(range(1, n_users + 1), n_users)]
            engines = [("local", lambda: run_local(bundle, users, batch))]
            engines += [(f"ray x{n}", lambda n=n: run_ray(bundle, users, batch, n, cores)) for n in args.actors]
            reference = None
            for engine, run in engines:
                best = None
                for _ in range(args.repeats):
                    records, first, total = run()
                    gc.collect()
                    if reference is None:
                        reference = records
                    else:
                        check_same(reference, records, f"{case}, {engine}")
                    if best is None or total < best[1]:
                        best = (first, total)
                rows.append(row(case, n_users, n_items, batch, engine, *best))
                print(f"  {engine}: first record {best[0]:.1f} s, {best[1]:.1f} s in all, "
                      f"{rows[-1]['users_per_s']:,} users/s", flush=True)
            del reference
    finally:
        ray.shutdown()
    table = markdown(rows)
    print(table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"cores": cores, "k": K, "rows": rows}, indent=1))
    if args.md:
        args.md.parent.mkdir(parents=True, exist_ok=True)
        args.md.write_text(table + "\n")


if __name__ == "__main__":
    main()
