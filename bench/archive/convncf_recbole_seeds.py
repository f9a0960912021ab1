"""RecBole 1.2.1's ConvNCF on many seeds, scored by our evaluation: RecBole's side of ConvNCF's quality figures
at a third of the cost.

    .venv/bin/python bench/archive/convncf_recbole_seeds.py --seeds 10 11 12 --epochs 3 --data ../shared/data/ml-100k \
        --out-dir bench/out

Per seed, RecBole trains in its own venv exactly as in bench/train_vs_recbole.py (same config, same
timestamp-rank copy of the data, same seed) but with `--weights-dir`: no evaluation inside RecBole, the
weights saved after every epoch. Each epoch's weights are then loaded into our ConvNCF (embedding rows moved
to our ids by token) and scored by our full-sort evaluation on the validation users; the last epoch with the
highest validation NDCG@10 (RecBole keeps a checkpoint on `>=`) gives the test figures.

Why it is the same figure: RecBole's full-sort pass for ConvNCF runs its CNN over every user-item pair (2-3
minutes a pass here, four passes a run); ours computes the same ranks (bench/archive/convncf_eval_check.py: equal to
six places against a torch.topk pass done RecBole's way) in ~20 s. RecBole's evaluation draws nothing from
the training streams, so the weights match a run that evaluates; reproducing a recorded seed checks it.

Writes `<out-dir>/recbole_convncf_<epochs>ep_seed<S>.json` per seed, in the format bench/archive/convncf_seeds.py reads.
Run it alone: a second torch process on the same cores distorts every figure.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]  # this file is in bench/archive/
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))  # train_vs_recbole, which stays in bench/
sys.path.insert(0, str(Path(__file__).resolve().parent))  # recbole_weights, beside this file

from recbole_weights import as_ours, id_maps  # noqa: E402
from train_vs_recbole import rank_timestamp_copy  # noqa: E402

from training.loop import load_checkpoint  # noqa: E402
from training.train import DataOptions, prepare  # noqa: E402


def train_recbole(seed: int, args, data_path: Path, work: Path) -> tuple[Path, dict]:
    """RecBole trains ConvNCF for --epochs with `seed` on `data_path` (the timestamp-rank copy); returns the
    folder of its per-epoch weights and its report."""
    weights, report = work / f"weights_seed{seed}", work / f"recbole_seed{seed}.json"
    cmd = [args.recbole_python, str(REPO / "bench" / "recbole_side.py"), "--model", "ConvNCF",
           "--data-path", str(data_path), "--dataset", args.data.name,
           "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--seed", str(seed),
           "--weights-dir", str(weights), "--out", str(report)]
    env = {**os.environ, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}
    subprocess.run(cmd, env=env, cwd=REPO, check=True, stdout=subprocess.DEVNULL)  # stderr: live progress
    return weights, json.loads(report.read_text())


@torch.no_grad()
def score_epochs(weights: Path, model, task, epochs: int) -> dict:
    """Our valid metrics for every epoch's weights, and test metrics of the last best one."""
    first = load_checkpoint(weights / "epoch0.pt")
    id_map = id_maps(task.data, first["user_tokens"], first["item_tokens"])  # every epoch's file has the same

    def load(epoch: int) -> None:
        state = load_checkpoint(weights / f"epoch{epoch}.pt")["state_dict"]
        model.load_state_dict(as_ours(state, *id_map), strict=False)
        model.eval()

    history = []
    for epoch in range(epochs):
        load(epoch)
        history.append(task.evaluate("valid"))
        print(f"[recbole seeds] epoch {epoch}: valid NDCG@10 {history[-1]['ndcg@10']:.4f}", file=sys.stderr,
              flush=True)
    scores = [h["ndcg@10"] for h in history]
    best = len(scores) - 1 - int(np.argmax(scores[::-1]))
    load(best)
    return {"history": history, "best_epoch": best, "valid": history[best], "test": task.evaluate("test")}


def run_seed(seed: int, args, data_path: Path, model, task) -> None:
    """One seed: RecBole trains, ours scores, the report is written."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"convncf_recbole_seed{seed}_") as work:
        weights, recbole_report = train_recbole(seed, args, data_path, Path(work))
        figures = score_epochs(weights, model, task, args.epochs)
    figures.update({"evaluated_by": "ours (bench/archive/convncf_recbole_seeds.py)",
                    "train_epoch_seconds": recbole_report["train_epoch_seconds"],
                    "train_epoch_losses": recbole_report["train_epoch_losses"]})
    report = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "seed": seed,
              "epochs": args.epochs, "batch_size": args.batch_size, "data": str(args.data),
              "models": {"convncf": {"recbole": figures}}, "wall_seconds": time.perf_counter() - started}
    out = args.out_dir / f"recbole_convncf_{args.epochs}ep_seed{seed}.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"seed {seed}: valid NDCG@10 {figures['valid']['ndcg@10']:.4f} (epoch {figures['best_epoch']}), "
          f"test NDCG@10 {figures['test']['ndcg@10']:.4f}, {report['wall_seconds']:.0f} s -> {out}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", required=True)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=2048)
    parser.add_argument("--data", type=Path, required=True, help="the atomic-file folder (ml-100k)")
    parser.add_argument("--out-dir", type=Path, default=REPO / "bench" / "out")
    parser.add_argument("--recbole-python", default="/work/recbole-venv/bin/python")
    args = parser.parse_args()
    args.data = args.data.resolve()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    model, task, _ = prepare("convncf", args.data, DataOptions(), seed=0)
    with tempfile.TemporaryDirectory(prefix="convncf_recbole_") as tmp:
        data_path = rank_timestamp_copy(args.data, Path(tmp))
        for seed in args.seeds:
            run_seed(seed, args, data_path, model, task)


if __name__ == "__main__":
    main()
