"""Training and evaluation side by side with RecBole 1.2.1: seconds per epoch, seconds per full-sort pass, quality.

    .venv/bin/python bench/train_vs_recbole.py --models convncf gru4recf bert4rec --epochs 10 \
        --batch-size 2048 --data /work/shared/data/ml-100k \
        --out bench/out/train_vs_recbole.json --md docs/benchmarks_train.md

For each model, one after the other (never in parallel): RecBole trains it in a subprocess of its own
environment (bench/recbole_side.py under /work/recbole-venv), then ours trains it in this process through
`training.train.run`. Same atomic files, same leave-one-out split (last interaction per user = test, the one
before = valid), same model sizes, batch size, epoch count, learning rate and seed; neither side stops early
(our patience = the epoch count) and both keep the best epoch by validation NDCG@10 for the test figures.

RecBole 1.2.1 sorts timestamps as float32, which cannot tell apart timestamps a few seconds apart (on
ml-100k 5 users' validation and 4 users' test targets land differently from an exact sort). By default
RecBole therefore reads a temporary copy of the .inter whose timestamps are replaced by their dense ranks:
same order as the exact values, and none of these models reads timestamps for anything but ordering.

Measured on each side:
- s/epoch: one training pass over the data (batching, negative sampling or masking, forward, backward,
  optimizer step), mean over the epochs; evaluation excluded.
- eval s: one full-sort pass over every validation user (score all items, exclude, rank), mean over the
  passes made during training.
- test NDCG@10 / Recall@10 of the best-by-validation model, each side by its own evaluation code.
- the users, items and interactions each side read, and the valid/test target of every user.

Ours is also re-scored with RecBole's evaluation definition (for sequential models RecBole 1.2.1 ranks the
whole catalog without excluding the user's history, `repeatable: True`; ConvNCF excludes it on both sides),
so quality can be compared like for like.

Run it alone: a second torch process on the same cores distorts every figure.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

RECBOLE_NAMES = {"convncf": "ConvNCF", "gru4recf": "GRU4RecF", "bert4rec": "BERT4Rec"}
SEQUENTIAL = ("gru4recf", "bert4rec")
EXPECTED = {"ml-100k": {"users": 943, "items": 1682, "interactions": 100_000}}
COUNT_KEYS = ("users", "items", "interactions", "train_samples", "valid_users", "test_users")


def warn(warnings: list[str], message: str) -> None:
    warnings.append(message)
    bar = "!" * 100
    print(f"\n{bar}\n!!! WARNING: {message}\n{bar}\n", file=sys.stderr, flush=True)


# --- RecBole's side -----------------------------------------------------------------------------------------

def rank_timestamp_copy(data: Path, work: Path) -> Path:
    """A copy of the atomic files for RecBole in which every timestamp is replaced by its dense rank.

    RecBole 1.2.1 holds timestamps as float32 (min-max normalised first when the dataset is named ml-100k)
    and sorts them stably, so timestamps closer than float32 can tell apart keep file order, while ours sort
    the exact values. Ranks are small integers that float32 holds exactly, equal timestamps get equal ranks,
    so with this copy both sides put every user's interactions in the same order. Returns the folder that
    holds `<name>/`; the other files are symlinked.
    """
    name = data.name
    dst = work / "recbole_data" / name
    dst.mkdir(parents=True, exist_ok=True)
    lines = (data / f"{name}.inter").read_text(encoding="utf-8").split("\n")
    header = lines[0].rstrip("\r").split("\t")
    column = next((i for i, col in enumerate(header) if col.rpartition(":")[0] == "timestamp"), None)
    if column is None:
        raise SystemExit(f"{data / (name + '.inter')} has no timestamp column to rank")
    rows = [line.rstrip("\r").split("\t") for line in lines[1:] if line.strip()]
    _, rank = np.unique(np.array([float(r[column]) for r in rows]), return_inverse=True)
    for row, r in zip(rows, rank):
        row[column] = str(int(r))
    (dst / f"{name}.inter").write_text("\n".join(["\t".join(header)] + ["\t".join(r) for r in rows]) + "\n",
                                      encoding="utf-8")
    for other in data.iterdir():
        if other.name != f"{name}.inter" and not (dst / other.name).exists():
            (dst / other.name).symlink_to(other)
    return dst.parent


def run_recbole(kind: str, args, epochs: int, work: Path) -> dict:
    out = work / f"recbole_{kind}.json"
    data_path = args.recbole_data_path or args.data.parent
    cmd = [args.recbole_python, str(REPO / "bench" / "recbole_side.py"), "--model", RECBOLE_NAMES[kind],
           "--data-path", str(data_path), "--dataset", args.data.name, "--epochs", str(epochs),
           "--batch-size", str(args.batch_size), "--eval-batch-size", str(args.recbole_eval_batch_size),
           "--seed", str(args.seed), "--out", str(out)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    env = {**os.environ, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}
    print(f"[{kind}] RecBole: {shlex.join(cmd)}", file=sys.stderr, flush=True)
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, text=True)  # stderr: live progress
    if proc.returncode != 0:
        print(proc.stdout, file=sys.stderr)
        raise RuntimeError(f"RecBole's side failed for {kind} (exit {proc.returncode})")
    report = json.loads(out.read_text())
    report["wall_seconds"] = time.perf_counter() - started
    return report


# --- our side -----------------------------------------------------------------------------------------------

def run_ours(kind: str, args, epochs: int, work: Path) -> dict:
    import torch

    from training.interactions import InteractionTask
    from training.train import DataOptions, run, train_config

    captured: dict = {}
    evals: list[dict] = []
    original_init, original_evaluate = InteractionTask.__init__, InteractionTask.evaluate

    def init(self, *a, **kw):
        original_init(self, *a, **kw)
        captured["task"] = self

    def evaluate(self, phase, *a, **kw):
        t = time.perf_counter()
        result = original_evaluate(self, phase, *a, **kw)
        evals.append({"phase": phase, "seconds": time.perf_counter() - t, "metrics": result})
        print(f"[ours {kind}] {phase} eval: ndcg@10 {result.get('ndcg@10', float('nan')):.4f}, "
              f"{evals[-1]['seconds']:.2f} s", file=sys.stderr, flush=True)
        return result

    # RecBole's recipe where our defaults differ (the recipe's `reference`: one sample per prefix, its dropout,
    # a constant lr 1e-3, ...), with this comparison's epochs and batch size; RecBole's own side has no stopping
    reference = recipe_settings(kind, "train")
    cfg = train_config(kind, **{**reference, "epochs": epochs, "batch_size": args.batch_size, "patience": epochs,
                                "progress": False, "seed": args.seed})
    print(f"[{kind}] ours: run({kind!r}, {str(args.data)!r}, ..., {cfg})", file=sys.stderr, flush=True)
    InteractionTask.__init__, InteractionTask.evaluate = init, evaluate
    started = time.perf_counter()
    try:
        # as the RecBole side (recbole_side.py): its features, and its recipe (one sample per prefix)
        result = run(kind, args.data, work / "ours", cfg, DataOptions(features=["class"]),
                     model_settings=recipe_settings(kind, "model"))
    finally:
        InteractionTask.__init__, InteractionTask.evaluate = original_init, original_evaluate
    wall = time.perf_counter() - started

    task = captured["task"]
    history = result.metrics["history"]
    for row in history:
        print(f"[ours {kind}] epoch {row['epoch']}: mean loss {row['loss']:.4f}, {row['seconds']:.2f} s",
              file=sys.stderr, flush=True)
    valid_passes = [e for e in evals if e["phase"] == "valid"][: len(history)]  # those made during training
    final_tests = [e for e in evals if e["phase"] == "test"]
    epoch_seconds = [row["seconds"] for row in history]
    data, split = task.data, task.split
    report = {
        "side": "ours",
        "model": kind,
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
        "threads": torch.get_num_threads(),
        "train_config": {k: getattr(cfg, k) for k in ("epochs", "batch_size", "lr", "weight_decay", "patience",
                                                      "monitor", "seed")},
        "model_config": _model_config(task.model),
        "parameters": sum(p.numel() for p in task.model.parameters()),
        "counts": {"users": len(data.users) - 1, "items": len(data.items) - 1, "interactions": int(len(data.user)),
                   "train_samples": int(task.size), "valid_users": len(split.valid.target),
                   "test_users": len(split.test.target)},
        "train_epoch_seconds": epoch_seconds,
        "train_epoch_seconds_mean": float(np.mean(epoch_seconds)) if epoch_seconds else None,
        "valid_eval_seconds": [e["seconds"] for e in valid_passes],
        "valid_eval_seconds_mean": float(np.mean([e["seconds"] for e in valid_passes])) if valid_passes else None,
        "test_eval_seconds": final_tests[-1]["seconds"] if final_tests else None,
        "history": history,
        "best_epoch": result.metrics["best_epoch"],
        "valid": result.metrics["valid"],
        "test": result.metrics["test"],
        "wall_seconds": wall,
    }
    try:
        report["recbole_definition"] = {phase: recbole_style_metrics(task, phase) for phase in ("valid", "test")}
    except Exception as err:  # noqa: BLE001 - an extra; never lose the run over it
        report["recbole_definition_error"] = f"{type(err).__name__}: {err}"
    report["targets"] = {phase: _targets(data, getattr(split, phase)) for phase in ("valid", "test")}
    return report


def _model_config(model) -> dict:
    from dataclasses import asdict
    cfg = asdict(model.cfg)
    return {k: v for k, v in cfg.items() if not isinstance(v, dict) or len(v) < 20}


def _targets(data, part) -> dict[str, str]:
    users = np.asarray(data.users.ids, dtype=object)[part.user]
    items = np.asarray(data.items.ids, dtype=object)[part.target]
    return {str(u): str(i) for u, i in zip(users, items)}


def recipe_settings(kind: str, section: str) -> dict:
    """One section of the kind's reference recipe (models/<kind>.py `reference`: RecBole 1.2.1's settings where
    our defaults differ), as field -> value."""
    from models.registry import recipe

    return {name.split(".")[1]: value for name, value in recipe(kind).reference.items()
            if name.startswith(section + ".")}


def recbole_style_metrics(task, phase: str, ks: tuple[int, ...] = (10,)) -> dict[str, float]:
    """Our model's full-sort metrics under RecBole 1.2.1's definition: the padding item is never ranked; the
    user's history is excluded for ConvNCF (general models) but not for the sequential models, which RecBole
    evaluates as repeatable (FullSortEvalDataLoader builds no history for them)."""
    import torch

    from training.evaluate import csr_pairs, rank_metrics, target_ranks

    part = getattr(task.split, phase)
    model = task.model
    model.eval()
    with torch.no_grad():
        inputs = task.eval_inputs(phase)
        items = model.item_vectors()
        targets = torch.from_numpy(part.target.astype(np.int64))
        ranks = []
        for start in range(0, len(targets), task.eval_batch_size):
            rows = slice(start, min(start + task.eval_batch_size, len(targets)))
            scores = model.full_sort_scores(model.user_vectors({k: v[rows] for k, v in inputs.items()}), items)
            n = rows.stop - rows.start
            if task.pairwise:
                ex_rows, ex_items = csr_pairs(part.history_indptr, part.history_items, rows)
            else:
                ex_rows, ex_items = torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.int64)
            ex_rows = torch.cat([ex_rows, torch.arange(n)])                     # padding item 0: never ranked
            ex_items = torch.cat([ex_items, torch.zeros(n, dtype=torch.int64)])
            ranks.append(target_ranks(scores, targets[rows], ex_rows, ex_items))
    return rank_metrics(torch.cat(ranks).numpy(), ks)


# --- comparison and report ----------------------------------------------------------------------------------

def compare(kind: str, dataset: str, rb: dict | None, ours: dict | None, warnings: list[str]) -> dict:
    out: dict = {}
    if rb and ours:
        a, b = rb["counts"], ours["counts"]
        differing = {k: (a.get(k), b.get(k)) for k in COUNT_KEYS if a.get(k) != b.get(k)}
        out["count_differences"] = differing
        if differing:
            warn(warnings, f"{kind}: RecBole and ours saw different data: "
                           + ", ".join(f"{k} RecBole {x} vs ours {y}" for k, (x, y) in differing.items()))
        for phase in ("valid", "test"):
            t_rb, t_ours = rb["targets"][phase], ours["targets"][phase]
            users = sorted(set(t_rb) | set(t_ours), key=_natural)
            diff = [{"user": u, "recbole": t_rb.get(u), "ours": t_ours.get(u)} for u in users
                    if t_rb.get(u) != t_ours.get(u)]
            out[f"{phase}_target_differences"] = diff
            if diff:
                warn(warnings, f"{kind}: the {phase} target differs for {len(diff)} of {len(users)} users "
                               f"(e.g. user {diff[0]['user']}: RecBole {diff[0]['recbole']}, ours {diff[0]['ours']}). "
                               "RecBole orders interactions by the timestamp as float32 (min-max normalised when "
                               "the dataset is named ml-100k), so near-equal timestamps can swap places; "
                               "--recbole-rank-timestamps (the default) removes the difference.")
        if rb["parameters"] != ours["parameters"]:
            out["parameter_difference"] = ours["parameters"] - rb["parameters"]
        for key in ("train_epoch_seconds_mean", "valid_eval_seconds_mean"):
            if rb.get(key) and ours.get(key):
                out[key.replace("_mean", "_ratio")] = ours[key] / rb[key]
        if rb["threads"] != ours["threads"]:
            warn(warnings, f"{kind}: torch threads differ: RecBole {rb['threads']}, ours {ours['threads']}")
    for side, report in (("RecBole", rb), ("ours", ours)):
        expected = EXPECTED.get(dataset)
        if report and expected:
            off = {k: (report["counts"][k], v) for k, v in expected.items() if report["counts"][k] != v}
            if off:
                warn(warnings, f"{kind}: {side} saw "
                               + ", ".join(f"{k} {x} (expected {y})" for k, (x, y) in off.items()))
    return out


def _natural(s: str):
    return (0, int(s), "") if s.isdigit() else (1, 0, s)


def fmt(x, digits: int = 2) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def metric(report: dict, phase: str, key: str = "ndcg@10") -> str:
    return fmt((report.get(phase) or {}).get(key), 4)


def markdown(report: dict) -> str:
    lines = [
        f"# Training side by side with RecBole {report['versions'].get('recbole', '1.2.1')} on {report['dataset']}",
        "",
        "Written by `bench/train_vs_recbole.py`. Command:",
        "",
        "```",
        report["command"],
        "```",
        "",
        f"- When: {report['date']}; machine: {report['machine']['cpu']}, {report['machine']['cores']} cores, "
        f"{report['machine']['load_before']} load average before the run",
        f"- Versions: ours torch {report['versions']['torch_ours']}; RecBole {report['versions'].get('recbole', '?')} "
        f"with torch {report['versions'].get('torch_recbole', '?')}; torch threads: "
        f"RecBole {report['threads'].get('recbole', '?')}, ours {report['threads'].get('ours', '?')}",
        f"- Epochs: {', '.join(f'{k} {v}' for k, v in report['epochs'].items())}; training batch size "
        f"{report['batch_size']}; Adam, lr 1e-3, seed {report.get('seed', 2020)}; no early stopping; test figures from the best epoch "
        f"by validation NDCG@10",
        f"- Evaluation batches: RecBole eval_batch_size {report['recbole_eval_batch_size']} (interactions: "
        f"for ConvNCF that is {report['recbole_eval_batch_size']} // n_items users per batch; for the sequential "
        "models that many users), ours 256 users",
        f"- RecBole read the timestamps {report['recbole_timestamps']}",
        "",
        "| model | RecBole s/epoch | ours s/epoch | ratio (ours/RecBole) | RecBole eval s | ours eval s | ratio "
        "| RecBole test NDCG@10 | ours | RecBole test Recall@10 | ours |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for kind, m in report["models"].items():
        rb, ours, cmp_ = m.get("recbole") or {}, m.get("ours") or {}, m.get("comparison", {})
        lines.append(
            f"| {kind} | {fmt(rb.get('train_epoch_seconds_mean'))} | {fmt(ours.get('train_epoch_seconds_mean'))} "
            f"| {fmt(cmp_.get('train_epoch_seconds_ratio'))} | {fmt(rb.get('valid_eval_seconds_mean'))} "
            f"| {fmt(ours.get('valid_eval_seconds_mean'))} | {fmt(cmp_.get('valid_eval_seconds_ratio'))} "
            f"| {metric(rb, 'test')} | {metric(ours, 'test')} "
            f"| {metric(rb, 'test', 'recall@10')} | {metric(ours, 'test', 'recall@10')} |"
        )
    lines += [
        "",
        "s/epoch: one training pass (batching, sampling or masking, forward, backward, step), mean over the "
        "epochs, evaluation excluded. eval s: one full-sort pass over all validation users, mean over the "
        "passes during training. Ratios below 1 mean ours is faster. Test metrics: each side's own evaluation.",
        "",
        "## Same metric definition",
        "",
        "RecBole 1.2.1 evaluates sequential models as *repeatable*: the full-sort ranking does not exclude the "
        "user's history (ConvNCF's does). Ours excludes it for every model, so for GRU4RecF and BERT4Rec the "
        "table above compares two definitions. Here our best model is re-scored with RecBole's definition:",
        "",
        "| model | RecBole valid NDCG@10 | ours | RecBole test NDCG@10 | ours | RecBole test Recall@10 | ours |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for kind, m in report["models"].items():
        rb, ours = m.get("recbole") or {}, m.get("ours") or {}
        rd = ours.get("recbole_definition") or {}
        lines.append(
            f"| {kind} | {metric(rb, 'valid')} | {metric(rd, 'valid')} | {metric(rb, 'test')} | {metric(rd, 'test')} "
            f"| {metric(rb, 'test', 'recall@10')} | {metric(rd, 'test', 'recall@10')} |"
        )
    lines += [
        "",
        "## Data each side saw",
        "",
        "| model | side | users | items | interactions | train samples | valid users | test users | parameters "
        "| best epoch | valid targets differing | test targets differing |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for kind, m in report["models"].items():
        cmp_ = m.get("comparison", {})
        for side in ("recbole", "ours"):
            r = m.get(side)
            if not r:
                continue
            c = r["counts"]
            vd, td = cmp_.get("valid_target_differences"), cmp_.get("test_target_differences")
            lines.append(
                f"| {kind} | {'RecBole' if side == 'recbole' else 'ours'} | {c['users']:,} | {c['items']:,} "
                f"| {c['interactions']:,} | {c['train_samples']:,} | {c['valid_users']:,} | {c['test_users']:,} "
                f"| {r['parameters']:,} | {r['best_epoch']} | {'—' if vd is None else len(vd)} "
                f"| {'—' if td is None else len(td)} |"
            )
    if report["warnings"]:
        lines += ["", "## Warnings", ""] + [f"- **{w}**" for w in report["warnings"]]
    return "\n".join(lines) + "\n"


def machine_info() -> dict:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "?"
    return {"cpu": cpu, "cores": os.cpu_count(), "load_before": load, "platform": platform.platform()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=list(RECBOLE_NAMES), default=list(RECBOLE_NAMES))
    parser.add_argument("--epochs", type=int, default=10, help="epochs for every model (both sides)")
    for kind in RECBOLE_NAMES:
        parser.add_argument(f"--epochs-{kind}", type=int, default=None, help=f"epochs for {kind} (else --epochs)")
    parser.add_argument("--batch-size", type=int, default=2048)
    parser.add_argument("--seed", type=int, default=2020, help="the seed of both sides (RecBole's default: 2020)")
    parser.add_argument("--data", type=Path, default=Path("/work/shared/data/ml-100k"),
                        help="folder <name>/ holding <name>.inter (and <name>.item)")
    parser.add_argument("--out", type=Path, default=Path("bench/out/train_vs_recbole.json"))
    parser.add_argument("--md", type=Path, default=None, help="also write the markdown report here")
    parser.add_argument("--recbole-python", default="/work/recbole-venv/bin/python")
    parser.add_argument("--recbole-eval-batch-size", type=int, default=4096, help="RecBole's eval_batch_size")
    parser.add_argument("--threads", type=int, default=None, help="torch threads on both sides (default: torch's)")
    parser.add_argument("--recbole-rank-timestamps", action=argparse.BooleanOptionalAction, default=True,
                        help="give RecBole a temporary copy of the .inter whose timestamps are their dense ranks, "
                             "so both sides order (and split) every user's interactions identically (default; "
                             "none of the three models reads timestamps otherwise). --no-recbole-rank-timestamps: "
                             "RecBole reads the file as it is and a handful of users' targets may differ")
    parser.add_argument("--sides", nargs="+", choices=("recbole", "ours"), default=["recbole", "ours"])
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="where our checkpoints/bundles and RecBole's JSON go (default: a temporary folder)")
    args = parser.parse_args()
    args.data = args.data.resolve()
    if not (args.data / f"{args.data.name}.inter").is_file():
        sys.exit(f"{args.data} has no {args.data.name}.inter (RecBole reads <folder>/<folder name>.inter)")
    command = shlex.join([".venv/bin/python", *sys.argv])

    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    temporary = args.work_dir is None
    work = Path(tempfile.mkdtemp(prefix="train_vs_recbole_")) if temporary else args.work_dir.resolve()
    work.mkdir(parents=True, exist_ok=True)

    args.recbole_data_path = rank_timestamp_copy(args.data, work) if args.recbole_rank_timestamps else None
    warnings: list[str] = []
    report: dict = {
        "command": command,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_info(),
        "dataset": args.data.name,
        "data": str(args.data),
        "batch_size": args.batch_size,
        "seed": args.seed,
        "recbole_eval_batch_size": args.recbole_eval_batch_size,
        "recbole_timestamps": ("as dense ranks (a temporary copy of the .inter: same order as ours, as float32 holds "
                               "ranks exactly)" if args.recbole_rank_timestamps else "as in the file"),
        "epochs": {},
        "versions": {"torch_ours": torch.__version__},
        "threads": {"ours": torch.get_num_threads()},
        "models": {},
        "warnings": warnings,
    }

    def save() -> None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        slim = json.loads(json.dumps(report, default=str))
        for m in slim["models"].values():
            for side in ("recbole", "ours"):
                if m.get(side):
                    m[side].pop("targets", None)  # thousands of lines; the differences are kept in `comparison`
        args.out.write_text(json.dumps(slim, indent=2))
        if args.md:
            args.md.parent.mkdir(parents=True, exist_ok=True)
            args.md.write_text(markdown(report))

    try:
        for kind in args.models:
            epochs = getattr(args, f"epochs_{kind}") or args.epochs
            report["epochs"][kind] = epochs
            entry: dict = {}
            report["models"][kind] = entry
            if "recbole" in args.sides:
                entry["recbole"] = run_recbole(kind, args, epochs, work)
                report["versions"].update({"recbole": entry["recbole"]["versions"]["recbole"],
                                           "torch_recbole": entry["recbole"]["versions"]["torch"]})
                report["threads"]["recbole"] = entry["recbole"]["threads"]
            if "ours" in args.sides:
                entry["ours"] = run_ours(kind, args, epochs, work)
                if "recbole_definition_error" in entry["ours"]:
                    warn(warnings, f"{kind}: re-scoring ours with RecBole's definition failed: "
                                   f"{entry['ours']['recbole_definition_error']}")
            entry["comparison"] = compare(kind, args.data.name, entry.get("recbole"), entry.get("ours"), warnings)
            save()  # after every model, so a later failure loses nothing
    finally:
        if temporary:
            shutil.rmtree(work, ignore_errors=True)
    save()
    print(markdown(report))
    print(f"wrote {args.out}" + (f" and {args.md}" if args.md else ""))


if __name__ == "__main__":
    main()
