"""Training's half of `recserve` (recserve/cli.py): train, export, make or fetch data. Heavy imports happen
inside each command, so building the parser imports no torch."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from models.registry import KINDS  # names only: no torch until a command needs it
from recserve.options import COUNT, FINITE, NON_NEGATIVE, NON_NEGATIVE_FLOAT, POSITIVE, UsageError


def add_train_parser(sub) -> None:
    p = sub.add_parser("train", help="train a model, evaluate it and export a bundle",
                       description="Train one model (or --all), print validation/test metrics, write metrics.json "
                                   "and curves.png next to the checkpoint, and export an ONNX bundle.")
    p.add_argument("--model", choices=sorted(KINDS), help="which model to train")
    p.add_argument("--all", action="store_true", help="train and export every model kind (needs --data-news and --data-interactions)")
    p.add_argument("--data", type=Path, help="dataset folder: RecBole atomic files (.inter/.item), or MIND news.tsv + behaviors.tsv for a news model")
    p.add_argument("--data-news", type=Path, help="with --all: the MIND-format folder for the news models")
    p.add_argument("--data-interactions", type=Path, help="with --all: the atomic-file folder for the interaction models")
    p.add_argument("--out", type=Path, default=Path("artifacts"), help="artifacts folder (default: artifacts)")
    # Unset options take the model's recipe defaults (models/<kind>.py), printed when training starts.
    p.add_argument("--epochs", type=COUNT, help="maximum epochs (default: the model's: convncf 10, gru4recf 30, bert4rec 80, nrms 5)")
    p.add_argument("--batch-size", type=COUNT, help="training batch size (default: the model's: convncf 2048, gru4recf 256 and bert4rec 1024 targets a step, nrms 32)")
    p.add_argument("--lr", type=NON_NEGATIVE_FLOAT, help="Adam learning rate (default: the model's; 1e-3, bert4rec 2e-3, nrms 5e-4, plm_nrms 1e-4)")
    p.add_argument("--patience", type=COUNT, help="epochs without a better validation metric before stopping (default: the model's; 3, nrms and plm_nrms 2, bert4rec 80)")
    p.add_argument("--seed", type=NON_NEGATIVE, help="random seed, >= 0 (default: 2020)")  # numpy's SeedSequence
    p.add_argument("--max-steps", type=COUNT, help="cap on training steps per epoch (quick runs)")
    p.add_argument("--resume", action="store_true", help="continue from <out>/<model>/train/last.pt")
    p.add_argument("--min-rating", type=FINITE, help="atomic data: keep interactions rated at least this")
    p.add_argument("--k-core", type=NON_NEGATIVE, help="atomic data: drop users and items with fewer interactions, iteratively")
    p.add_argument("--max-seq-length", type=COUNT, help="sequential models: history length (default 50)")
    p.add_argument("--features", nargs="+", help="gru4recf: item features to use (default: every token and token_seq field of the .item file)")
    p.add_argument("--word-vectors", help="nrms: 'glove' (GloVe 6B 50d, needs recserve[glove]) or a GloVe-format text file")
    p.add_argument("--pretrained", help="plm_nrms: the news encoder, 'minilm' (default: the packaged all-MiniLM-L6-v2) or a Hugging Face BERT folder")
    p.add_argument("--valid-behaviors", type=Path, help="nrms: a behaviors.tsv to validate on (default: the last day of --data)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"],
                   help="where to train: cuda (each process its own GPU), cpu, or auto (default: cuda when torch "
                        "can use a GPU here, else cpu). Export runs on the CPU whatever the device")
    p.add_argument("--nproc", type=COUNT, default=1,
                   help="data-parallel training in this many processes on this machine (DDP over gloo on cpu, "
                        "NCCL on cuda with one GPU per process; default 1); --batch-size stays the global batch. "
                        "Several machines: torchrun, see the README")
    p.add_argument("--threads", type=COUNT,
                   help="torch threads per process (default: torch's; with --nproc or torchrun: cores / processes)")
    add_settings_options(p)
    p.set_defaults(func=cmd_train)


def add_settings_options(p) -> None:
    """--config, --set and --show-config (training/settings.py): every hyperparameter by name."""
    p.add_argument("--config", type=Path, metavar="FILE",
                   help="a YAML file of settings (sections train, data, model; what --show-config and `recserve "
                        "tune` write). Precedence: the model's defaults < --reference-recipe < --config < the "
                        "options above < --set")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", dest="settings",
                   help="set one setting, e.g. --set model.hidden_size=128 --set lr=3e-4 (repeatable; a bare name "
                        "where one section has it); --show-config lists them")
    p.add_argument("--reference-recipe", action="store_true",
                   help="start from the reference implementation's recipe (RecBole 1.2.1's) where the model's "
                        "defaults differ from it (gru4recf, bert4rec: one sample per prefix, ...); --show-config "
                        "shows it. --config, the options above and --set still apply over it")
    p.add_argument("--show-config", action="store_true",
                   help="print the effective settings of --model as YAML (the form --config reads) and exit")


def command_line_settings(args) -> dict:
    """The settings the explicit options of `recserve train` give (section.field -> value; unset ones left out)."""
    given = {"train.epochs": args.epochs, "train.batch_size": args.batch_size, "train.lr": args.lr,
             "train.patience": args.patience, "train.seed": args.seed, "train.max_steps_per_epoch": args.max_steps,
             "train.progress": False if args.no_progress else None, "train.device": args.device,
             "data.min_rating": args.min_rating, "data.k_core": args.k_core, "data.max_seq_length": args.max_seq_length,
             "data.features": args.features, "data.word_vectors": args.word_vectors, "data.pretrained": args.pretrained}
    return {k: v for k, v in given.items() if v is not None}


def resolve_settings(args, kind: str):
    """One kind's effective settings: its defaults < --reference-recipe < --config < the explicit options < --set.
    The options a kind does not read (--features for bert4rec) are left out, as training always did."""
    from training.settings import read_file, resolve, section_types
    from models.registry import recipe

    config = read_file(args.config) if args.config else None
    known = section_types(recipe(kind))
    options = {k: v for k, v in command_line_settings(args).items() if k.split(".")[1] in known[k.split(".")[0]]}
    return resolve(kind, config=config, options=options, assignments=args.settings,
                   reference=args.reference_recipe)


def cmd_train(args) -> int:
    from models.registry import recipes
    from training import distributed
    from training.device import require_gpus, resolve_device

    if args.config and not (args.model or args.all):
        args.model = _config_kind(args.config)  # a file --show-config or the tuner wrote names its kind
    if args.show_config:
        if not args.model:
            raise UsageError("recserve train --show-config needs --model (or a --config naming its kind)")
        print(resolve_settings(args, args.model).to_yaml(), end="")
        return 0
    if args.all:
        if args.config or args.settings or args.reference_recipe:
            raise UsageError("recserve train: --config, --set and --reference-recipe are for one --model, not --all")
        if not (args.data_news and args.data_interactions):
            raise UsageError("recserve train --all needs --data-news DIR and --data-interactions DIR")
        folders = {"news": args.data_news, "interactions": args.data_interactions}
        jobs = [(kind, folders[r.family]) for kind, r in recipes().items()]
    elif args.model and args.data:
        jobs = [(args.model, args.data)]
    else:
        raise UsageError("recserve train needs --model and --data (or --all with --data-news and --data-interactions)")
    require_resumable(args, [kind for kind, _ in jobs])
    torchrun = distributed.torchrun_env()
    if torchrun and args.nproc > 1:
        raise UsageError("recserve train: --nproc starts its own processes; under torchrun leave it out "
                         "(torchrun's --nproc-per-node says how many)")
    # Refused here, before any data is read or process started: a bad setting, no CUDA, or fewer GPUs than processes.
    settings = {kind: resolve_settings(args, kind) for kind, _ in jobs}
    args.device = resolve_device(settings[jobs[0][0]].train["device"])
    for s in settings.values():
        s.train["device"] = args.device
    if args.device == "cuda" and args.nproc > 1:
        require_gpus(args.nproc, f"--nproc {args.nproc}")
    if torchrun:
        # record: torchrun's failure summary then shows the failing rank's error, not only its exit code
        from torch.distributed.elastic.multiprocessing.errors import record

        return record(_torchrun_train)(args, jobs, settings)  # each rank checks its LOCAL_RANK against the GPUs
    if args.threads and args.nproc == 1:
        import torch

        torch.set_num_threads(args.threads)
    _train_jobs(args, jobs, settings, rank=0)
    return 0


def require_resumable(args, kinds: list[str]) -> None:
    """--resume with nothing to resume used to start afresh without a word: refused before any data is read."""
    missing = [args.out / kind / "train" / "last.pt" for kind in kinds]
    missing = [path for path in missing if not path.is_file()] if args.resume else []
    if missing:
        raise UsageError(f"--resume: no {missing[0]} to continue from (a run under --out {args.out} writes it); "
                         "leave --resume out to train from the start")


def _torchrun_train(args, jobs, settings) -> int:
    """One of torchrun's processes: join its group, train (rank 0 reports), leave."""
    from training import distributed

    rank = distributed.init_from_torchrun(args.threads, args.device).rank
    try:
        _train_jobs(args, jobs, settings, rank)
    finally:
        distributed.leave()
    return 0


def _config_kind(path: Path | None) -> str | None:
    from training.settings import read_file

    return read_file(path).get("kind") if path else None


def _train_jobs(args, jobs, settings, rank: int) -> None:
    """Train each (kind, data) job with its resolved settings (kind -> training.settings.Settings)."""
    from training.train import run, run_data_parallel

    for kind, data in jobs:
        cfg = settings[kind].train_config()
        opts = settings[kind].data_options(valid_behaviors=args.valid_behaviors)
        model_settings = settings[kind].model_changes()
        if rank == 0:
            logging.getLogger("recserve.train").info("%s on %s: %s; model: %s", kind, data, cfg, settings[kind].model)
        if args.nproc > 1:
            result = run_data_parallel(args.nproc, kind, data, args.out, cfg, opts, resume=args.resume,
                                       threads=args.threads, model_settings=model_settings)
        else:
            result = run(kind, data, args.out, cfg, opts, resume=args.resume, model_settings=model_settings)
        if result is None:  # a rank other than 0 under torchrun: rank 0 reports
            continue
        print(metrics_table(kind, result.metrics))
        print(f"bundle: {result.bundle}\nmetrics: {result.run_dir / 'metrics.json'}\ncurves: {result.run_dir / 'curves.png'}")


def metrics_table(kind: str, metrics: dict) -> str:
    phases = [p for p in ("valid", "test") if p in metrics]
    names = list(metrics[phases[0]])
    best = metrics.get("best_epoch")  # counted from 0 in metrics.json; from 1 in the log and the curves
    lines = [f"{kind} (best epoch {best + 1 if isinstance(best, int) else best})", "| phase | " + " | ".join(names) + " |",
             "|---" * (len(names) + 1) + "|"]
    lines += [f"| {p} | " + " | ".join(f"{metrics[p][n]:.4f}" for n in names) + " |" for p in phases]
    return "\n".join(lines)


def add_tune_parser(sub) -> None:
    p = sub.add_parser("tune", help="search a model's settings on its validation metric (Optuna)",
                       description="Search settings with Optuna's TPE on the validation metric, pruning trials "
                                   "whose per-epoch figure trails the median. The study is kept in --study "
                                   "(SQLite): the same command again continues it. Prints a line per trial and "
                                   "writes the best settings to <study>/best.yaml for `recserve train --config`.")
    p.add_argument("--model", choices=sorted(KINDS), help="which model to tune (default: the --config file's kind)")
    p.add_argument("--data", type=Path, required=True, help="dataset folder, as for recserve train")
    p.add_argument("--trials", type=COUNT, required=True,
                   help="finished (complete or pruned) trials the study should hold; a rerun runs the rest")
    p.add_argument("--timeout", type=POSITIVE, metavar="SECONDS", help="start no trial after this long (each worker)")
    p.add_argument("--space", type=Path, metavar="FILE",
                   help="a YAML search space replacing the model's default (training/tune_spaces.py): "
                        "name: [values] or name: {low, high, log}")
    p.add_argument("--study", type=Path, metavar="DIR", help="the study's folder (default: studies/<model>)")
    p.add_argument("--jobs", type=COUNT,
                   help="trials at once, each in its own process with cores / jobs torch threads (default: one per "
                        "4 cores, at least one; on 2 cores one trial at a time with both cores)")
    p.add_argument("--config", type=Path, metavar="FILE", help="settings every trial starts from (as recserve train)")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", dest="settings",
                   help="a setting every trial starts from, e.g. --set epochs=5 (repeatable); the space's values "
                        "override it")
    p.add_argument("--valid-behaviors", type=Path, help="nrms: a behaviors.tsv to validate on (as recserve train)")
    p.set_defaults(func=cmd_tune)


def cmd_tune(args) -> int:
    import os

    from training.settings import read_file, resolve
    from training.tune import TuneJob, default_jobs, summary, tune
    from training.tune_spaces import load_space

    kind = args.model or _config_kind(args.config)
    if not kind:
        raise UsageError("recserve tune needs --model (or a --config naming its kind)")
    base = resolve(kind, config=read_file(args.config) if args.config else None, assignments=args.settings)
    space = load_space(kind, args.space)
    cores = os.cpu_count() or 1
    jobs = args.jobs or default_jobs(cores)
    study = args.study or Path("studies") / kind
    job = TuneJob(kind, str(args.data), str(study), base.as_dict(), space, args.trials, args.timeout,
                  threads=max(1, cores // jobs), valid_behaviors=args.valid_behaviors)
    print(f"tuning {kind} on {args.data}: {args.trials} trials, {jobs} at a time with {job.threads} thread(s) each, "
          f"on valid {base.train['monitor']}; study {study}; space: {', '.join(space)}", flush=True)
    tune(job, jobs)
    print(summary(study))
    return 0


def add_export_parser(sub) -> None:
    p = sub.add_parser("export", help="re-export a saved checkpoint as a bundle",
                       description="Rebuild a bundle from best.pt (and the bundle_data/ folder beside it).")
    p.add_argument("--checkpoint", type=Path, required=True, help="path to a best.pt written by `recserve train`")
    p.add_argument("--out", type=Path, default=None,
                   help="artifacts folder (default: the one the checkpoint is in, ARTIFACTS/<model>/train/best.pt)")
    p.add_argument("--int8-item-encoder", action="store_true",
                   help="ship the item encoder quantised to int8 (per channel): for text encoders (plm_nrms), ~2.5x "
                        "faster /items; kept MIND's validation AUC within 0.0003 (docs/benchmarks.md, 2b)")
    p.add_argument("--allow-low-recall-index", action="store_true",
                   help="write the bundle even if its item index misses its recall@10 target on the bundle's own "
                        "users (refused otherwise); the service then answers /recommend by an exact scan")
    p.set_defaults(func=cmd_export)


def cmd_export(args) -> int:
    from training.train import export_checkpoint

    bundle = export_checkpoint(args.checkpoint, args.out, args.int8_item_encoder,  # resolves the default --out
                               args.allow_low_recall_index)
    print(f"bundle: {bundle}")
    return 0


def add_commands(sub) -> None:
    """Training's commands on the `recserve` parser: train, export, data (synthetic, fetch)."""
    add_train_parser(sub)
    add_tune_parser(sub)
    add_export_parser(sub)
    data = sub.add_parser("data", help="make or download datasets",
                          description="Generate the built-in synthetic data or download real datasets.")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    add_synthetic_parser(data_sub)
    add_fetch_parser(data_sub)


def user_errors() -> tuple[type[Exception], ...]:
    """Errors of bad input that the command line reports in one line (ParityError is an ExportError)."""
    from training.bundle_data import ExportError
    from training.data.errors import DataError
    from training.device import DeviceError
    from training.launch import RankFailed
    from models.limits import SettingError

    return DataError, DeviceError, ExportError, FileNotFoundError, RankFailed, SettingError


def add_synthetic_parser(sub) -> None:
    p = sub.add_parser("synthetic", help="write the built-in synthetic datasets",
                       description="Write <dest>/mind (MIND-format news + impressions) and <dest>/interactions "
                                   "(RecBole atomic files), both with structure the models can learn.")
    p.add_argument("--dest", type=Path, required=True, help="output folder")
    p.add_argument("--users", type=COUNT, default=500, help="users in each dataset (default 500)")
    p.add_argument("--items", type=COUNT, default=400, help="items / news in each dataset (default 400)")
    p.add_argument("--seed", type=NON_NEGATIVE, default=0, help="random seed (default 0)")
    p.set_defaults(func=cmd_synthetic)


def cmd_synthetic(args) -> int:
    from training.data.mind_synthetic import write_synthetic_mind
    from training.data.synthetic import write_synthetic_atomic

    mind = write_synthetic_mind(args.dest / "mind", n_news=args.items, n_users=args.users, seed=args.seed)
    atomic = write_synthetic_atomic(args.dest / "interactions", n_users=args.users, n_items=args.items, seed=args.seed)
    print(f"news data: {mind}\ninteraction data: {atomic}")
    return 0


def add_fetch_parser(sub) -> None:
    # The dataset table gives the choices and the help text, so it is read here, not in cmd_fetch; it is
    # standard library only, like all of `recserve data fetch`.
    from training.datasets import DATASETS

    lines = [f"  {n:<11} {d.description}" for n, d in DATASETS.items()]
    p = sub.add_parser(
        "fetch", help="download a real dataset (MovieLens, MIND) and prepare it for training",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Download, verify (size + sha256) and convert a dataset into --dest.\nDownloads resume "
                    "when run again after a break; the dataset folder appears only when complete.\n\n"
                    + "\n".join(lines))
    p.add_argument("name", choices=sorted(DATASETS), metavar="NAME", help="one of: " + ", ".join(DATASETS))
    p.add_argument("--dest", type=Path, required=True, help="the dataset folder to create, e.g. data/ml-100k")
    p.add_argument("--base-url", help="fetch archives from URL/<file name> instead (a mirror or local server)")
    p.add_argument("--sha256", action="append", default=[], metavar="FILE=HEX",
                   help="pin an archive's sha256 (repeatable), e.g. MINDsmall_train.zip=ab12...")
    p.add_argument("--require-sha256", action="store_true",
                   help="refuse archives with no pinned sha256 instead of warning")
    p.add_argument("--overwrite", action="store_true", help="replace a dataset already in --dest")
    p.add_argument("--no-progress", action="store_true", help="no progress line")
    p.set_defaults(func=cmd_fetch)


def cmd_fetch(args) -> int:
    from training.datasets import fetch
    from training.download import FetchError

    pins = {}
    for item in args.sha256:
        file, eq, hexdigest = item.partition("=")
        if not eq:
            print(f"recserve: error: --sha256 {item!r}: expected FILE=HEX", file=sys.stderr)
            return 2
        pins[file.strip()] = hexdigest
    try:
        fetch(args.name, args.dest, base_url=args.base_url, progress=not args.no_progress, sha256=pins,
              require_sha256=args.require_sha256, overwrite=args.overwrite)
    except FetchError as err:
        print(f"recserve: error: {err}", file=sys.stderr)
        return 2
    return 0
