"""Data-parallel training (issue #23) against one process on MovieLens-100k: quality and time.

    flock /tmp/recserve-heavy.lock .venv/bin/python bench/ddp_ml100k.py --model gru4recf --epochs 2 \
        --seeds 2020 1 2 --data ../shared/data/ml-100k --out bench/out/ddp_ml100k.json

For each seed, one after the other (never in parallel), `recserve train` runs as a fresh process twice:
- single: 1 process x 2 torch threads (`--threads 2`);
- ddp:    2 ranks x 1 thread (`--nproc 2 --threads 1`, gloo),
with the same global batch (--batch-size, default 2048: 1024 per rank), epochs, lr and seed, and no early
stopping (patience = epochs). Recorded per run: the best epoch's validation NDCG@10 (the model exported),
the seconds of each epoch's training pass (rank 0's, which waits for the other's gradients), of each
validation pass, and the whole command's wall time (process start, data, training, evaluation, export).

Run it alone: another torch process on the same cores distorts every figure, and one rank slowed by another
process holds back both (every step ends in an all-reduce).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# --device cpu: both setups are CPU ones (gloo), also where a GPU would make --device auto pick it
SETUPS = {"single": ["--threads", "2", "--device", "cpu"], "ddp": ["--nproc", "2", "--threads", "1", "--device", "cpu"]}


def train_once(setup: str, args, seed: int, out: Path) -> dict:
    cmd = [sys.executable, "-m", "recserve", "train", "--model", args.model, "--data", str(args.data),
           "--out", str(out), "--epochs", str(args.epochs), "--patience", str(args.epochs),
           "--batch-size", str(args.batch_size), "--seed", str(seed), "--no-progress", *SETUPS[setup],
           "--set", "train_mode=prefix"]  # the recipe of its recorded figures (the default became window mode)
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    metrics = json.loads((out / args.model / "train" / "metrics.json").read_text())
    row = {"setup": setup, "seed": seed, "wall_s": wall, "valid_ndcg@10": metrics["valid"]["ndcg@10"],
           "test_ndcg@10": metrics["test"]["ndcg@10"], "best_epoch": metrics["best_epoch"],
           "train_s": [h["seconds"] for h in metrics["history"]],
           "eval_s": [h["eval_seconds"] for h in metrics["history"]],
           "steps": [h["steps"] for h in metrics["history"]],
           "valid_curve": [h["valid_ndcg@10"] for h in metrics["history"]]}
    print(f"{setup:6} seed {seed:>4}: valid NDCG@10 {row['valid_ndcg@10']:.4f}, train s/epoch "
          f"{' / '.join(f'{s:.1f}' for s in row['train_s'])}, wall {wall:.0f} s", flush=True)
    return row


def spread(values: list[float]) -> dict:
    return {"mean": statistics.mean(values), "min": min(values), "max": max(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def summary(rows: list[dict]) -> dict:
    out = {}
    for setup in SETUPS:
        mine = [r for r in rows if r["setup"] == setup]
        out[setup] = {"valid_ndcg@10": spread([r["valid_ndcg@10"] for r in mine]),
                      "test_ndcg@10": spread([r["test_ndcg@10"] for r in mine]),
                      "train_s_per_epoch": spread([s for r in mine for s in r["train_s"]]),
                      "eval_s": spread([s for r in mine for s in r["eval_s"]]),
                      "wall_s": spread([r["wall_s"] for r in mine])}
    return out


def model_size(args) -> dict:
    """Parameter count and what one all-reduce moves (fp32 gradients), from the model built on this data."""
    from training.train import DataOptions, prepare

    model, task, _ = prepare(args.model, args.data, DataOptions(features=["class"]), seed=0,  # as its recorded figures
                             model_settings={"train_mode": "prefix"})
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"parameters": params, "allreduce_bytes_per_step": 4 * params,
            "steps_per_epoch": task.num_batches(args.batch_size), "train_samples": task.size}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="gru4recf")
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "ml-100k")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=2048)
    p.add_argument("--seeds", type=int, nargs="+", default=[2020, 1, 2])
    p.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "ddp_ml100k.json")
    args = p.parse_args()
    args.data = args.data.resolve()
    started = datetime.now(timezone.utc)
    size = model_size(args)
    print(f"{args.model}: {size['parameters']:,} parameters, {size['steps_per_epoch']} steps per epoch", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="ddp-bench-") as tmp:
        for seed in args.seeds:
            for setup in SETUPS:  # interleaved, so drift of the host's speed hits both alike
                rows.append(train_once(setup, args, seed, Path(tmp) / f"{setup}-{seed}"))
    import torch

    result = {"started": started.isoformat(timespec="seconds"), "model": args.model, "data": str(args.data),
              "epochs": args.epochs, "batch_size": args.batch_size, "seeds": args.seeds, **size,
              "cpus": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version(),
              "runs": rows, "summary": summary(rows)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    for setup, s in result["summary"].items():
        v, t, w = s["valid_ndcg@10"], s["train_s_per_epoch"], s["wall_s"]
        print(f"{setup:6}: valid NDCG@10 {v['mean']:.4f} (min {v['min']:.4f}, max {v['max']:.4f}, std {v['std']:.4f}); "
              f"train s/epoch {t['mean']:.1f} ({t['min']:.1f}-{t['max']:.1f}); eval s {s['eval_s']['mean']:.2f}; "
              f"wall s/run {w['mean']:.0f}")
    print(f"raw: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
