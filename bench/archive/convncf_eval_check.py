"""Check our ConvNCF full-sort evaluation against a brute-force pass done RecBole's way.

    recserve train --model convncf --data ../shared/data/ml-100k --epochs 3 --seed 8 --out /tmp/cv
    python bench/archive/convncf_eval_check.py --checkpoint /tmp/cv/convncf/train/best.pt --data ../shared/data/ml-100k

Our evaluation scores the catalog with `ConvNCF.full_sort_scores` (the CNN as matrix products, layer 1 split
per item) and counts a target's rank as 1 + the items scoring at least as high. The brute-force pass scores
each user with the plain Conv2d stack, sets the padding item and the user's history to -inf and takes
`torch.topk`, as RecBole 1.2.1's full-sort evaluation does. Equal metrics mean a gap to RecBole's figures
comes from training, not from evaluation.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root (this file is in bench/archive/)

from training.loop import load_checkpoint  # noqa: E402
from training.train import DataOptions, prepare  # noqa: E402


@torch.no_grad()
def brute_force(model, part, k: int = 10) -> dict[str, float]:
    """NDCG@k and Recall@k of one phase, one user at a time through the Conv2d stack."""
    items, grid = model.item_embedding.weight, model.scorer.patch_grid
    ndcg = hits = ties = 0
    model.scorer.patch_grid = None  # forces the Conv2d path, the reference's layers
    try:
        for row in range(len(part.user)):
            user = model.user_embedding.weight[int(part.user[row])]
            scores = model.scorer(user[None], items[None])[0].clone()
            scores[0] = -math.inf
            scores[torch.from_numpy(part.history(row).astype(np.int64))] = -math.inf
            target = int(part.target[row])
            ties += int((scores == scores[target]).sum()) - 1
            top = torch.topk(scores, k).indices.tolist()
            if target in top:
                hits += 1
                ndcg += 1 / math.log2(top.index(target) + 2)
    finally:
        model.scorer.patch_grid = grid
    n = len(part.user)
    return {f"ndcg@{k}": ndcg / n, f"recall@{k}": hits / n, "target_ties": ties}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True, help="best.pt of a `recserve train` ConvNCF run")
    parser.add_argument("--data", type=Path, required=True, help="the atomic-file folder it was trained on")
    args = parser.parse_args()
    model, task, _ = prepare("convncf", args.data, DataOptions(), seed=0)
    model.load_state_dict(load_checkpoint(args.checkpoint)["model"])
    model.eval()
    for phase in ("valid", "test"):
        ours = task.evaluate(phase)
        brute = brute_force(model, getattr(task.split, phase))
        print(f"{phase}: ours NDCG@10 {ours['ndcg@10']:.6f} Recall@10 {ours['recall@10']:.6f} | brute force "
              f"NDCG@10 {brute['ndcg@10']:.6f} Recall@10 {brute['recall@10']:.6f}, targets tied {brute['target_ties']}")


if __name__ == "__main__":
    main()
