"""RecBole 1.2.1's side of bench/train_vs_recbole.py: train one model, time its epochs and evaluations.

Runs under RecBole's own environment, not the project's:

    TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 /work/recbole-venv/bin/python bench/recbole_side.py \
        --model BERT4Rec --data-path /work/shared/data --dataset ml-100k --epochs 10 --batch-size 2048 \
        --out /tmp/recbole_bert4rec.json

Data: `<data-path>/<dataset>/<dataset>.inter` (and `.item` for GRU4RecF), RecBole atomic files. RecBole
silently swaps in its own bundled copy when the dataset is named "ml-100k"; this script points it back at
`--data-path` (the bundled and the shared copy are byte-identical, but the run should read what it says).

Configuration: RecBole's own defaults (overall.yaml, the model's yaml, the dataset yaml) with only what the
benchmark fixes on top: leave-one-out split (LS valid_and_test, time order, full sort, grouped by user),
Recall/NDCG/MRR/Hit@10, NDCG@10 for model selection, the epoch count and batch size, no early stop within
the run, seed 2020 unless --seed, CPU. GRU4RecF and BERT4Rec train with CE over all items (no negative sampling); ConvNCF
with its default pairwise BPR against one uniformly sampled negative.

Timing: the trainer's `_train_epoch` (one pass over the training data: batching, sampling, forward,
backward, step) and `evaluate` (one full-sort pass over the valid or test users) are wrapped with timers.

`--weights-dir DIR` (ConvNCF's many-seed runs, bench/archive/convncf_recbole_seeds.py): train only, with no
RecBole evaluation (its full sort runs the CNN over every user-item pair, 2-3 minutes a pass here), and save the
weights after every epoch as `DIR/epoch<N>.pt` with RecBole's id -> token maps, for our evaluation code to
score. RecBole's evaluation draws nothing from the training run's random streams, so the trained weights are
the ones a run with evaluation reaches.

Nothing here is RecBole code; it only calls RecBole's public API. quick_start is not imported (it pulls in
an old ray).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # RecBole's checkpoints hold more than weights

MODELS = ("ConvNCF", "GRU4RecF", "BERT4Rec")
SEQUENTIAL = ("GRU4RecF", "BERT4Rec")
# Config keys worth recording beside the model's own yaml keys.
RECORDED_KEYS = ("train_batch_size", "eval_batch_size", "epochs", "learner", "learning_rate", "weight_decay",
                 "stopping_step", "train_neg_sample_args", "eval_args", "MAX_ITEM_LIST_LENGTH", "seed",
                 "repeatable", "normalize_all", "load_col", "loss_type", "valid_metric", "metrics", "topk",
                 "MODEL_INPUT_TYPE", "device")


def config_dict(args, work_dir: Path) -> dict:
    cfg = {
        "data_path": str(args.data_path),
        "checkpoint_dir": str(work_dir / "saved"),
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full", "group_by": "user"},
        "metrics": ["Recall", "NDCG", "MRR", "Hit"],
        "topk": [10],
        "valid_metric": "NDCG@10",
        "train_batch_size": args.batch_size,
        "eval_batch_size": args.eval_batch_size,
        "epochs": args.epochs,
        "stopping_step": 10**9,            # never stop early: every side runs all epochs
        "MAX_ITEM_LIST_LENGTH": 50,
        "seed": args.seed,
        "reproducibility": True,
        "use_gpu": False,
        "gpu_id": "",
        "show_progress": False,
        "metric_decimal_place": 6,         # RecBole rounds metrics to 4 places by default
        "save_dataset": False,
        "save_dataloaders": False,
        "log_wandb": False,
        # Always load the timestamp (sample.yaml, used for any dataset not named ml-100k, loads only the ids,
        # and the time-ordered split needs it).
        "load_col": {"inter": ["user_id", "item_id", "rating", "timestamp"]},
    }
    if args.model in SEQUENTIAL:
        cfg.update({"train_neg_sample_args": None, "loss_type": "CE"})
    if args.model == "GRU4RecF":
        cfg["load_col"]["item"] = ["item_id", args.feature]
        cfg.update({"selected_features": [args.feature], "pooling_mode": "sum"})
    if args.min_rating is not None:  # the ml-1m protocol of issue #31: rating >= 3, then 10-core
        cfg["val_interval"] = {"rating": f"[{args.min_rating},inf)"}
    if args.k_core:  # RecBole filters users and items alike, iteratively (as `recserve train --k-core`)
        cfg.update({"user_inter_num_interval": f"[{args.k_core},inf)", "item_inter_num_interval": f"[{args.k_core},inf)"})
    return cfg


def split_targets(dataset) -> dict[str, str]:
    """user token -> target item token of one leave-one-out part (valid or test)."""
    users = dataset.id2token(dataset.uid_field, dataset.inter_feat[dataset.uid_field].numpy())
    items = dataset.id2token(dataset.iid_field, dataset.inter_feat[dataset.iid_field].numpy())
    return {str(u): str(i) for u, i in zip(users, items)}


def jsonable(value):
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    return str(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, choices=MODELS)
    parser.add_argument("--data-path", required=True, type=Path, help="folder holding <dataset>/<dataset>.inter")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--batch-size", type=int, default=2048)
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--eval-batch-size", type=int, default=4096, help="RecBole's default, 4096")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="checkpoints and tensorboard logs (default: a temporary folder, removed after)")
    parser.add_argument("--weights-dir", type=Path, default=None,
                        help="train only (no RecBole evaluation) and save the weights after every epoch here")
    parser.add_argument("--min-rating", type=float, default=None, help="keep interactions rated at least this")
    parser.add_argument("--k-core", type=int, default=0, help="drop users and items with fewer interactions")
    parser.add_argument("--feature", default="class", help="GRU4RecF's item feature (ml-100k: class; ml-1m: genre)")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()
    args.data_path = args.data_path.resolve()
    args.out = args.out.resolve()
    if not (args.data_path / args.dataset / f"{args.dataset}.inter").is_file():
        sys.exit(f"no {args.data_path / args.dataset / (args.dataset + '.inter')}")

    started = time.perf_counter()
    import numpy as np
    import recbole
    import torch
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, get_trainer, init_seed

    if args.threads:
        torch.set_num_threads(args.threads)
    temporary = args.work_dir is None
    work_dir = Path(tempfile.mkdtemp(prefix="recbole_side_")) if temporary else args.work_dir.resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    os.chdir(work_dir)  # the trainer writes ./log_tensorboard wherever it runs
    try:
        config = Config(model=args.model, dataset=args.dataset, config_dict=config_dict(args, work_dir))
        config["data_path"] = str(args.data_path / args.dataset)  # undo the ml-100k -> bundled copy swap
        init_seed(config["seed"], config["reproducibility"])
        t0 = time.perf_counter()
        dataset = create_dataset(config)
        counts = {"users": dataset.user_num - 1, "items": dataset.item_num - 1,  # RecBole counts [PAD] too
                  "interactions": dataset.inter_num}
        train_data, valid_data, test_data = data_preparation(config, dataset)
        setup_seconds = time.perf_counter() - t0
        counts.update({"train_samples": len(train_data._dataset), "valid_users": len(valid_data._dataset),
                       "test_users": len(test_data._dataset)})

        init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
        model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
        trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)

        epochs: list[dict] = []
        evals: list[dict] = []
        train_epoch, evaluate = trainer._train_epoch, trainer.evaluate

        def timed_train_epoch(train_data, epoch_idx, *a, **kw):
            t = time.perf_counter()
            loss = train_epoch(train_data, epoch_idx, *a, **kw)
            seconds = time.perf_counter() - t
            total = float(sum(loss)) if isinstance(loss, tuple) else float(loss)  # RecBole sums over batches
            steps = len(train_data)
            epochs.append({"epoch": epoch_idx, "loss": total / max(steps, 1), "loss_sum": total, "seconds": seconds,
                           "steps": steps})
            print(f"[recbole {args.model}] epoch {epoch_idx}: mean loss {total / max(steps, 1):.4f}, {seconds:.2f} s",
                  file=sys.stderr, flush=True)
            return loss

        def timed_evaluate(eval_data, *a, **kw):
            phase = "test" if eval_data is test_data else "valid"
            t = time.perf_counter()
            result = evaluate(eval_data, *a, **kw)
            seconds = time.perf_counter() - t
            evals.append({"phase": phase, "seconds": seconds, "metrics": {k: float(v) for k, v in result.items()}})
            print(f"[recbole {args.model}] {phase} eval: ndcg@10 {result.get('ndcg@10', float('nan')):.4f}, "
                  f"{seconds:.2f} s", file=sys.stderr, flush=True)
            return result

        trainer._train_epoch, trainer.evaluate = timed_train_epoch, timed_evaluate
        if args.weights_dir is not None:
            trainer._train_epoch = saving_epochs(timed_train_epoch, model, dataset, args.weights_dir.resolve(), torch)
        t0 = time.perf_counter()
        evaluating = args.weights_dir is None
        trainer.fit(train_data, valid_data if evaluating else None, saved=evaluating, show_progress=False)
        fit_seconds = time.perf_counter() - t0
        test_result = trainer.evaluate(test_data, load_best_model=True, show_progress=False) if evaluating else {}

        valid_passes = [e for e in evals if e["phase"] == "valid"]
        scores = [e["metrics"]["ndcg@10"] for e in valid_passes]
        # The last maximum: RecBole's early_stopping saves the model on `value >= best`.
        best = len(scores) - 1 - int(np.argmax(scores[::-1])) if scores else -1
        epoch_seconds = [e["seconds"] for e in epochs]
        report = {
            "side": "recbole",
            "model": args.model,
            "dataset": args.dataset,
            "data_path": str(args.data_path / args.dataset),
            "versions": {"recbole": recbole.__version__, "torch": torch.__version__, "python": sys.version.split()[0]},
            "threads": torch.get_num_threads(),
            "config": {k: jsonable(config[k]) for k in _model_yaml_keys(recbole, args.model) + list(RECORDED_KEYS)
                       if k in config},
            "parameters": sum(p.numel() for p in model.parameters()),
            "counts": counts,
            "setup_seconds": setup_seconds,
            "fit_seconds": fit_seconds,
            "train_epoch_seconds": epoch_seconds,
            "train_epoch_losses": [e["loss"] for e in epochs],
            "train_epoch_seconds_mean": float(np.mean(epoch_seconds)) if epoch_seconds else None,
            "valid_eval_seconds": [e["seconds"] for e in valid_passes],
            "valid_eval_seconds_mean": float(np.mean([e["seconds"] for e in valid_passes])) if valid_passes else None,
            "test_eval_seconds": evals[-1]["seconds"] if evals and evals[-1]["phase"] == "test" else None,
            "history": [{**row, **{f"valid_{k}": v for k, v in e["metrics"].items()}}
                        for row, e in zip(epochs, valid_passes)],
            "best_epoch": best,
            "valid": valid_passes[best]["metrics"] if scores else None,
            "test": {k: float(v) for k, v in test_result.items()},
            "targets": {"valid": split_targets(valid_data._dataset), "test": split_targets(test_data._dataset)},
            "total_seconds": time.perf_counter() - started,
        }
    finally:
        if temporary:
            shutil.rmtree(work_dir, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps({k: v for k, v in report.items() if k not in ("history", "targets", "config")}, indent=2))


def saving_epochs(train_epoch, model, dataset, weights_dir: Path, torch):
    """`train_epoch` that then saves the model's weights and the id -> token maps as epoch<N>.pt."""
    weights_dir.mkdir(parents=True, exist_ok=True)
    user_tokens, item_tokens = ([str(t) for t in dataset.field2id_token[field]]
                                for field in (dataset.uid_field, dataset.iid_field))

    def train_and_save(train_data, epoch_idx, *a, **kw):
        loss = train_epoch(train_data, epoch_idx, *a, **kw)
        torch.save({"state_dict": model.state_dict(), "user_tokens": user_tokens, "item_tokens": item_tokens},
                   weights_dir / f"epoch{epoch_idx}.pt")
        return loss

    return train_and_save


def _model_yaml_keys(recbole, model: str) -> list[str]:
    """The keys of RecBole's own yaml for a model (its defaults), read from the installed package."""
    path = Path(recbole.__file__).parent / "properties" / "model" / f"{model}.yaml"
    keys = []
    for line in path.read_text().splitlines():
        if line and not line.startswith((" ", "#")) and ":" in line:
            keys.append(line.split(":", 1)[0].strip())
    return keys


if __name__ == "__main__":
    main()
