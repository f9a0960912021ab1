"""Step 2 of 2 of the ConvNCF step-by-step check (step 1 and the commands: bench/archive/convncf_steps_recbole.py).

Loads RecBole's initial weights into our ConvNCF (embedding rows moved to our ids through the tokens), sets
dropout to 0, replays RecBole's batches with Adam (lr 1e-3) and prints both losses per step, then the largest
difference per parameter after the last step. Equal losses mean the two compute the same training step, so a
difference between their trained models comes from their random streams (initial weights, order, negatives,
dropout masks), not from the model, loss or optimiser.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root (this file is in bench/archive/)

from training.train import DataOptions, prepare  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))  # recbole_weights, beside this file
from recbole_weights import as_ours, id_maps  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="the ml-100k atomic-file folder")
    parser.add_argument("--steps", type=Path, required=True,
                        help="the file bench/archive/convncf_steps_recbole.py wrote")
    args = parser.parse_args()
    recbole = torch.load(args.steps, weights_only=True)
    model, task, _ = prepare("convncf", args.data, DataOptions(), seed=0)
    user_map, item_map = id_maps(task.data, recbole["user_tokens"], recbole["item_tokens"])

    start = as_ours(recbole["initial"], user_map, item_map)
    model.load_state_dict(start, strict=False)  # the encoders share these embeddings
    model.scorer.dropout.p = 0.0
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for step, ((users, positives, negatives), theirs) in enumerate(zip(recbole["batches"], recbole["losses"])):
        optimizer.zero_grad()
        loss = model.compute_loss({"user": user_map[users], "pos_item": item_map[positives],
                                   "neg_item": item_map[negatives]})
        loss.backward()
        optimizer.step()
        print(f"step {step}: ours {loss.item():.4f}, RecBole {theirs:.4f}, difference {loss.item() - theirs:+.2e}")
    final, state = as_ours(recbole["final"], user_map, item_map), model.state_dict()
    for name, value in final.items():
        print(f"{name}: largest difference after the last step {float((state[name] - value).abs().max()):.2e}")


if __name__ == "__main__":
    main()
