"""Test NDCG@10 against training minutes for a sequential model (issue #31: ml-1m, rating >= 3, 10-core,
leave-one-out, full ranking), one point per epoch:

    python bench/seq_curve.py --model gru4recf --data /work/data/ml-1m --min-rating 3 --k-core 10 \
        --features genre --minutes 60 --out bench/out/ml1m_gru4recf.json [--set NAME=VALUE ...]

The run is `recserve train`'s own (the same data preparation, `training.loop.fit`, the model's defaults with
`--set` on top); after each epoch's validation it also scores the test users twice: as `recserve train` does
(the user's training items left out of the ranking) and as RecBole 1.2.1 does for sequential models
("repeatable": nothing left out), so the figures compare with RecBole's. The minutes are the training's own
wall clock, validation included, these extra test passes excluded. It stops at the first epoch ending past
`--minutes` or at `--epochs`, whichever comes first (no early stopping: the curve is the point).
`--recbole FILE.json` (bench/recbole_side.py's output on the same data) adds RecBole's validation curve to the PNG;
`--replot RUN.json` only redraws the PNG of a finished run (with `--recbole`, say).
With `--test-every N` the test passes run after every N-th epoch only; when the run ends by itself (its epochs,
early stopping, or `--set max_minutes=...`), the model it keeps (the best epoch by validation) is scored on test:
`final` in the JSON, the figure `recserve train` would report.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


class OutOfTime(Exception):
    pass


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, choices=["gru4recf", "bert4rec"])
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--min-rating", type=float)
    p.add_argument("--k-core", type=int, default=0)
    p.add_argument("--features", nargs="*")
    p.add_argument("--minutes", type=float, default=60)
    p.add_argument("--epochs", type=int, default=1000)
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="a setting, as `recserve train --set` takes it")
    p.add_argument("--test-every", type=int, default=1, metavar="N",
                   help="score the test users after every N-th epoch only (each pass costs time a long run can "
                        "use); the best epoch's model is scored at the end either way")
    p.add_argument("--recbole", type=Path, help="bench/recbole_side.py's JSON for the same data")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--from-log", type=Path, help="only rebuild --out (JSON, PNG) from the points a stopped run printed")
    p.add_argument("--replot", type=Path, help="only draw --out's PNG from a finished run's JSON (with --recbole)")
    args = p.parse_args()
    if args.replot:
        return plot(json.loads(args.replot.read_text()), args.recbole, args.out.with_suffix(".png"))
    if args.from_log:
        points = [json.loads(line) for line in args.from_log.read_text().splitlines()
                  if line.startswith('{"epoch"') and '"test_ndcg@10"' in line]
        out = {"model": args.model, "data": str(args.data), "points": points,
               "best_by_valid": max(points, key=lambda x: x["valid_ndcg@10"]), "stopped_by_hand": True}
        args.out.write_text(json.dumps(out, indent=1))
        return plot(out, args.recbole, args.out.with_suffix(".png"))

    # the loop's per-epoch line (training loss, epoch time) goes to the log beside the points: whether the model
    # still fits its training windows better when validation stands still
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    import torch

    from train_vs_recbole import recbole_style_metrics
    from training.loop import fit
    from training.settings import resolve
    from training.train import prepare

    options = {"data.min_rating": args.min_rating, "data.k_core": args.k_core, "train.epochs": args.epochs,
               "train.patience": args.epochs, "train.progress": False, "train.device": "cpu"}
    if args.model == "gru4recf" and args.features:
        options["data.features"] = args.features
    settings = resolve(args.model, options={k: v for k, v in options.items() if v is not None},
                       assignments=args.set)
    cfg, opts = settings.train_config(), settings.data_options()
    model, task, _ = prepare(args.model, args.data, opts, cfg.seed, settings.model_changes())
    points, extra = [], [0.0]
    started = time.perf_counter()

    def on_epoch(epoch: int, valid: float) -> None:
        minutes = (time.perf_counter() - started - extra[0]) / 60
        if (epoch + 1) % args.test_every:
            print(json.dumps({"epoch": epoch + 1, "minutes": round(minutes, 2), "valid_ndcg@10": valid}), flush=True)
            if minutes >= args.minutes:
                raise OutOfTime
            return
        t = time.perf_counter()
        model.eval()
        with torch.no_grad():
            ours = task.evaluate("test")
            recbole_way = recbole_style_metrics(task, "test")
        model.train()
        extra[0] += time.perf_counter() - t
        point = {"epoch": epoch + 1, "minutes": round(minutes, 2), "valid_ndcg@10": valid,
                 "test_ndcg@10": ours["ndcg@10"], "test_ndcg@10_recbole_way": recbole_way["ndcg@10"],
                 "test_hit@10": ours["hit@10"]}
        points.append(point)
        print(json.dumps(point), flush=True)
        if minutes >= args.minutes:
            raise OutOfTime

    with tempfile.TemporaryDirectory() as run_dir:
        try:
            result = fit(task, cfg, Path(run_dir), on_epoch=on_epoch)
        except OutOfTime:
            result = None
        trained = (time.perf_counter() - started - extra[0]) / 60
        final = None
        if result is not None:  # fit ended by itself and left the best epoch's weights: what `recserve train` exports
            with torch.no_grad():
                final = {"best_epoch": result.best_epoch + 1, "valid_ndcg@10": result.best_metric,
                         "test_ndcg@10": task.evaluate("test")["ndcg@10"],
                         "test_ndcg@10_recbole_way": recbole_style_metrics(task, "test")["ndcg@10"],
                         "minutes": round(trained, 2), "epochs": len(result.history)}
            print(json.dumps({"final": final}), flush=True)
    best = max(points, key=lambda x: x["valid_ndcg@10"])
    out = {"model": args.model, "data": str(args.data), "settings": settings.as_dict(), "points": points,
           "best_by_valid": best, "final": final, "threads": torch.get_num_threads()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    plot(out, args.recbole, args.out.with_suffix(".png"))
    print(json.dumps({"best_by_valid": best}))


def plot(ours: dict, recbole: Path | None, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    pts = ours["points"]
    minutes = [p["minutes"] for p in pts]
    ax.plot(minutes, [p["test_ndcg@10"] for p in pts], "o-", label=f"{ours['model']}: test (history left out)")
    ax.plot(minutes, [p["test_ndcg@10_recbole_way"] for p in pts], "s--", label=f"{ours['model']}: test, RecBole's way")
    ax.plot(minutes, [p["valid_ndcg@10"] for p in pts], ".:", label=f"{ours['model']}: valid")
    if recbole is not None:
        rb = json.loads(recbole.read_text())  # bench/recbole_side.py's JSON: `history`, one entry an epoch
        xs, elapsed = [], 0.0
        for epoch, valid_s in zip(rb["history"], rb["valid_eval_seconds"]):
            elapsed += epoch["seconds"] + valid_s  # its epochs and validations, as our minutes count them
            xs.append(elapsed / 60)
        ax.plot(xs, [e["valid_ndcg@10"] for e in rb["history"]], "^-", label=f"RecBole 1.2.1 {rb['model']}: valid, its own way")
        test = rb.get("test", {}).get("ndcg@10")
        if test is not None:
            ax.plot([xs[rb["best_epoch"]]], [test], "v", label=f"RecBole 1.2.1 {rb['model']}: test, its own way")
    ax.set_xlabel("training minutes (2 cores, validation included)")
    ax.set_ylabel("NDCG@10")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
