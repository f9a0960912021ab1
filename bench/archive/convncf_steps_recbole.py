"""Step 1 of 2 of the ConvNCF step-by-step check; runs in the RecBole venv (recipe: docs/benchmarks.md, section 1).

    TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 /work/recbole-venv/bin/python bench/archive/convncf_steps_recbole.py \\
        --data-path ../shared/data --out /tmp/convncf_steps.pt
    .venv/bin/python bench/archive/convncf_steps_ours.py --data ../shared/data/ml-100k --steps /tmp/convncf_steps.pt

RecBole 1.2.1's ConvNCF on ml-100k with dropout 0 (its only randomness inside a step): saves its initial
weights, its first --steps training batches (users, positives, negatives) with the loss of each step under
Adam (lr 1e-3), its weights after them, and its id <-> token maps. Step 2 replays the same batches through ours.
"""
import argparse
import os
import sys
import tempfile
import types
from pathlib import Path

import torch
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.utils import get_model, init_seed

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # recbole_side, which stays in bench/
from recbole_side import config_dict  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--data-path", type=Path, required=True, help="folder holding ml-100k/ml-100k.inter")
parser.add_argument("--out", type=Path, required=True)
parser.add_argument("--seed", type=int, default=8)
parser.add_argument("--steps", type=int, default=10)
args = parser.parse_args()
data_path, out = args.data_path.resolve(), args.out.resolve()
os.chdir(tempfile.mkdtemp(prefix="convncf_steps_"))  # RecBole writes logs where it runs
side = types.SimpleNamespace(model="ConvNCF", data_path=data_path, dataset="ml-100k", epochs=1, batch_size=2048,
                             seed=args.seed, eval_batch_size=4096, threads=None)
cfg = config_dict(side, Path.cwd())
cfg["dropout_prob"] = 0.0
config = Config(model="ConvNCF", dataset="ml-100k", config_dict=cfg)
config["data_path"] = str(data_path / "ml-100k")
init_seed(args.seed, True)
dataset = create_dataset(config)
train_data, _, _ = data_preparation(config, dataset)
init_seed(args.seed, True)
model = get_model("ConvNCF")(config, train_data._dataset)
initial = {k: v.clone() for k, v in model.state_dict().items()}
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
batches, losses = [], []
model.train()
for step, interaction in enumerate(train_data):
    if step == args.steps:
        break
    batches.append((interaction["user_id"].clone(), interaction["item_id"].clone(), interaction["neg_item_id"].clone()))
    optimizer.zero_grad()
    loss = model.calculate_loss(interaction)
    loss.backward()
    optimizer.step()
    losses.append(loss.item())
torch.save({"initial": initial, "final": model.state_dict(), "batches": batches, "losses": losses,
            "user_tokens": [str(t) for t in dataset.field2id_token["user_id"]],
            "item_tokens": [str(t) for t in dataset.field2id_token["item_id"]]}, out)
print(f"RecBole losses: {[round(x, 4) for x in losses]}; wrote {out}")
