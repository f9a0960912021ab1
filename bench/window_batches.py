"""What grouping windows by length saves a training step (training/interactions.py `by_length_in_pools`), as a
ratio taken in one run:

    python bench/window_batches.py --data <ml-1m> --min-rating 3 --k-core 10 --max-seq-length 200 [--steps 60]

A run prepares one model and its windows the way `recserve train` does, then alternates two ways of batching the
same shuffled windows, `--repeats` times each: "grouped" (this tree: pools sorted by window length, each batch
cut to its longest window) and "random" (the windows in shuffled order, each batch still cut to its longest
window, which then is almost always a full one). Each takes `--steps` training steps (forward, loss, backward,
Adam) and reports seconds a step and the share of a batch's positions that hold an item. Run it alone.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from training import interactions  # noqa: E402
from training.settings import resolve  # noqa: E402
from training.train import prepare  # noqa: E402


def steps(task, batch_size: int, n: int, seed: int, grouped: bool) -> tuple[float, float]:
    """(seconds a step, share of positions holding an item) over `n` steps of one way of batching."""
    keep = interactions.by_length_in_pools
    if not grouped:
        interactions.by_length_in_pools = lambda order, *rest: order
    try:
        batches = task.train_batches(batch_size, np.random.default_rng(seed))
        model = task.model.train()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        filled, started = [], time.perf_counter()
        for _, batch in zip(range(n), batches):
            optimizer.zero_grad()
            model.compute_loss(batch).backward()
            optimizer.step()
            filled.append(float(batch["seq_len"].sum()) / batch["item_seq"].numel())
        return (time.perf_counter() - started) / len(filled), float(np.mean(filled))
    finally:
        interactions.by_length_in_pools = keep


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="bert4rec", choices=["bert4rec", "gru4recf"])
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--min-rating", type=float)
    p.add_argument("--k-core", type=int, default=0)
    p.add_argument("--max-seq-length", type=int, default=200)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    settings = resolve(args.model, options={"data.min_rating": args.min_rating, "data.k_core": args.k_core,
                                            "data.max_seq_length": args.max_seq_length})
    _, task, _ = prepare(args.model, args.data, settings.data_options(), seed=0,
                         model_settings=settings.model_changes())
    batch_size = settings.train["batch_size"]
    print(f"{args.model}, history {args.max_seq_length}, {batch_size} targets a step, {args.steps} steps a row",
          flush=True)
    rows: dict[str, list[tuple[float, float]]] = {"random": [], "grouped": []}
    for r in range(args.repeats):
        for name in rows:
            rows[name].append(steps(task, batch_size, args.steps, seed=r, grouped=name == "grouped"))
            print(f"  {name:8s} {rows[name][-1][0] * 1000:7.1f} ms a step, {rows[name][-1][1]:.0%} of positions "
                  f"hold an item", flush=True)
    median = {name: statistics.median(s for s, _ in runs) for name, runs in rows.items()}
    print(f"median ms a step: random {median['random'] * 1000:.1f}, grouped {median['grouped'] * 1000:.1f}: "
          f"grouped / random = {median['grouped'] / median['random']:.2f}")


if __name__ == "__main__":
    main()
