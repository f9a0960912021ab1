"""The service's half of `recserve` (recserve/cli.py): serve the bundles, score users in bulk. Torch-free,
like the rest of service/: these commands run in the serving image."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from recserve.options import COUNT, POSITIVE, Number

PORT = Number(int, low=1, high=65535)


def add_commands(sub) -> None:
    """The service's commands on the `recserve` parser: serve, recommend, prune, logs export, evaluate,
    experiments report."""
    from service.experiments.cli import add_experiments_parser

    add_serve_parser(sub)
    add_recommend_parser(sub)
    add_prune_parser(sub)
    add_logs_parser(sub)
    add_evaluate_parser(sub)
    add_experiments_parser(sub)


def add_prune_parser(sub) -> None:
    p = sub.add_parser("prune", help="delete old bundle versions, keeping the newest N per model",
                       description="Delete the bundle versions of every model under --artifacts but the newest "
                                   "--keep, never the one LATEST names, nor train/ (the checkpoints) or an export "
                                   "in progress. Keep 2 or more where a service may fall back to the version before "
                                   "LATEST's (docs/bundle.md).")
    p.add_argument("--artifacts", type=Path, required=True, help="artifacts folder (ARTIFACTS/<model>/LATEST)")
    p.add_argument("--keep", type=COUNT, required=True, help="versions to keep per model, newest first (at least 1)")
    p.add_argument("--dry-run", action="store_true", help="list what would be deleted, delete nothing")
    p.set_defaults(func=cmd_prune)


def cmd_prune(args) -> int:
    from bundle.prune import prune

    if not args.artifacts.is_dir():
        raise FileNotFoundError(f"--artifacts {args.artifacts}: no such folder")
    removed = prune(args.artifacts, args.keep, args.dry_run)
    verb = "would delete" if args.dry_run else "deleted"
    for path, size in removed:
        print(f"{verb} {path} ({size / 1e6:.1f} MB)")
    print(f"{verb} {len(removed)} version(s), {sum(size for _, size in removed) / 1e6:.1f} MB; kept the newest "
          f"{args.keep} per model and LATEST's")
    return 0


def user_errors() -> tuple[type[Exception], ...]:
    """Errors of bad input that the command line reports in one line."""
    from bundle.contract import BundleError
    from service.batch_io import BatchInputError
    from service.config import SettingsError
    from service.experiments.config import ExperimentsError
    from service.feedback.export import ExportError
    from service.feedback.reader import LogError

    return BundleError, FileNotFoundError, SettingsError, BatchInputError, LogError, ExportError, ExperimentsError


def add_serve_parser(sub) -> None:
    p = sub.add_parser("serve", help="serve the bundles over HTTP",
                       description="Start the FastAPI service (uvicorn) on the LATEST bundle of every model.")
    p.add_argument("--artifacts", type=Path, default=None, help="artifacts folder (default: $RECSERVE_ARTIFACTS or artifacts)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=PORT, default=8000, help="port (default 8000)")
    p.add_argument("--workers", type=COUNT, default=1, help="uvicorn worker processes (default 1)")
    p.add_argument("--timeout-graceful-shutdown", type=COUNT, default=None, metavar="SECONDS",
                   help="on SIGTERM, wait at most this long for requests in flight before closing (default: "
                        "as long as they take); keep it below the orchestrator's grace period")
    p.set_defaults(func=cmd_serve)


def cmd_serve(args) -> int:
    from service.server import serve

    serve(artifacts=args.artifacts, host=args.host, port=args.port, workers=args.workers,
          timeout_graceful_shutdown=args.timeout_graceful_shutdown)
    return 0


def add_recommend_parser(sub) -> None:
    p = sub.add_parser("recommend", help="top-k recommendations for many users, offline",
                       description="Score a file of users with a bundle (batched, vectorised) and write JSON lines "
                                   '{"user_id", "results": [{"item_id", "score", "rank"}]} (or {"user_id", "error"}); '
                                   'users the model cannot score get the bundle\'s fallback ranking, with '
                                   '"fallback": <kind>. Files ending in .parquet are read and written as Parquet '
                                   "(--users: a user_id column; --out: the same fields as columns). Records come in "
                                   "the users' order, whichever the engine. --engine ray runs the same scoring on a "
                                   "pool of Ray actors: a local Ray, or the cluster at $RAY_ADDRESS.")
    p.add_argument("--bundle", type=Path, required=True, help="a bundle folder, or ARTIFACTS/<model> (uses LATEST)")
    p.add_argument("--users", type=Path, required=True,
                   help="text file with one user id per line, or a .parquet file with a user_id column")
    p.add_argument("--k", type=COUNT, default=10, help="items per user (default 10)")
    p.add_argument("--out", type=Path, required=True, help="output file: JSON lines, or Parquet if it ends in .parquet")
    p.add_argument("--batch-size", type=COUNT, default=256, help="users per user-encoder call (default 256)")
    p.add_argument("--include-history", action="store_true", help="do not leave out items the user already has")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local: this process (default); ray: Ray actors (pip install 'recserve[ray]')")
    p.add_argument("--actors", type=COUNT, default=1,
                   help="--engine ray: actors, each loading the bundle once (default 1)")
    p.add_argument("--cpus-per-actor", type=POSITIVE, default=1.0,
                   help="--engine ray: CPUs each actor holds, and its onnxruntime threads (default 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_recommend)


def cmd_recommend(args) -> int:
    from tqdm import tqdm

    from service.batch_io import RecordWriter, is_parquet, pyarrow, read_user_ids

    check_recommend_paths(args)  # before loading the bundle, which takes a while
    if is_parquet(args.out):
        pyarrow()  # not installed: say so now, not after the scoring
    if args.engine == "ray":
        from service.batch_ray import import_ray

        import_ray()
    user_ids = read_user_ids(args.users)
    errors = fallbacks = 0
    with recommend_records(args, user_ids) as records, RecordWriter(args.out) as out, \
            tqdm(total=len(user_ids), disable=args.no_progress, unit="user") as bar:
        for record in records:
            errors += "error" in record
            fallbacks += "fallback" in record
            out.write([record])
            bar.update(1)
    print(f"{len(user_ids) - errors} users scored ({fallbacks} of them unknown to the model: the fallback ranking), "
          f"{errors} skipped (see their 'error'): {args.out}")
    return 0


@contextmanager
def recommend_records(args, user_ids: list[str]) -> Iterator[Iterator[dict]]:
    """The records of `user_ids`, in their order, from the engine `args` names."""
    exclude_history = not args.include_history
    if args.engine == "ray":
        from service.batch_ray import ray_runtime, recommend_ray

        with ray_runtime(args.actors, args.cpus_per_actor):
            yield recommend_ray(args.bundle, user_ids, args.k, args.batch_size, exclude_history, args.actors,
                                args.cpus_per_actor)
        return
    import service.batch

    model = service.batch.load_for_batch(args.bundle)
    yield service.batch.recommend_users(model, user_ids, args.k, args.batch_size, exclude_history)


def check_recommend_paths(args) -> None:
    """Name a wrong path plainly; a corrupt bundle is left to the loader, whose BundleError names the file."""
    if not args.users.is_file():
        raise FileNotFoundError(f"--users {args.users}: no such file")
    if not args.bundle.exists():
        raise FileNotFoundError(f"--bundle {args.bundle}: no such file or folder")
    if not ((args.bundle / "manifest.json").is_file() or (args.bundle / "LATEST").is_file()):
        raise FileNotFoundError(f"--bundle {args.bundle}: not a bundle folder (no manifest.json) "
                                "nor a model folder (no LATEST)")
    if not args.out.parent.is_dir():
        raise FileNotFoundError(f"--out {args.out}: folder {args.out.parent} does not exist")


# --- the feedback log: export it as training data, evaluate a bundle on it ---------------------------------

LOG_SOURCE_HELP = ("the log: a redis:// URL (its stream is <prefix>:{log}:records) or the files sink's folder "
                   "(records-*.jsonl); default: where the service with these settings writes it, "
                   "$RECSERVE_FEEDBACK_REDIS_URL or $RECSERVE_REDIS_URL (unless $RECSERVE_FEEDBACK_SINK=files), else "
                   "$RECSERVE_FEEDBACK_DIR, else feedback/ beside $RECSERVE_ARTIFACTS")


def add_log_options(p) -> None:
    """--source, --prefix, --since, --until, --window, --event-types: what both log commands read."""
    p.add_argument("--source", "--logs", dest="source", default=None, help=LOG_SOURCE_HELP)
    p.add_argument("--prefix", default=None,
                   help="the service's key prefix, for a redis:// source (default: $RECSERVE_CACHE_PREFIX, recserve)")
    p.add_argument("--since", type=log_time, default=None, metavar="TIME",
                   help="first record time: ISO-8601 (UTC unless it names a zone) or Unix seconds (default: the start)")
    p.add_argument("--until", type=log_time, default=None, metavar="TIME",
                   help="records before this time, same forms (default: the end)")
    p.add_argument("--window", type=POSITIVE, default=None, metavar="SECONDS",
                   help="attribution window: a click counts for an impression if it comes this long after it at most "
                        "(default: the service's, $RECSERVE_ATTRIBUTION_WINDOW_S or 900)")
    p.add_argument("--event-types", nargs="+", default=["click"], metavar="TYPE",
                   help="event types that count as clicks (default: click)")


def log_time(text: str) -> float:
    import argparse

    from service.feedback.reader import parse_time

    try:
        return parse_time(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def log_source(args):
    """The Reader of --source, or of the log the service would write with this environment's settings (whose
    attribution window is also --window's default)."""
    from service.config import load_settings
    from service.feedback.reader import Reader

    settings = load_settings()  # a bad RECSERVE_ value: one line, not pydantic's traceback
    if args.window is None:
        args.window = float(settings.attribution_window_s)
    source = args.source
    if source is None and settings.feedback_sink != "files":
        source = settings.feedback_redis_url or settings.redis_url or None  # "": an unset compose variable
    if source is None:
        source = str(settings.feedback_dir or Path(settings.artifacts).absolute().parent / "feedback")
    return Reader(source, args.prefix or settings.cache_prefix)


def add_logs_parser(sub) -> None:
    logs = sub.add_parser("logs", help="the feedback log: export it as training data",
                          description="Read the feedback log the service writes (impressions, clicks, added items).")
    logs_sub = logs.add_subparsers(dest="logs_command", required=True)
    p = logs_sub.add_parser("export", help="write the log as training data, one folder per model",
                            description="Write the feedback log as training data into --out: per news model "
                                        "<model>/behaviors.tsv + news.tsv (MIND), per interaction model "
                                        "<model>/<model>.inter (RecBole), and impressions.parquet + events.parquet; "
                                        "`recserve train --model KIND --data OUT/<model>` trains on a model's "
                                        "folder. See service/feedback/export.py.")
    add_log_options(p)
    p.add_argument("--out", type=Path, required=True, help="a new (or empty) folder for the training data")
    p.add_argument("--news", action="append", default=[], metavar="MODEL=FILE",
                   help="news model MODEL: the news.tsv it was trained on, whose rows lead the exported news.tsv "
                        "(the log's added items replace rows of the same id); repeat for several models")
    p.add_argument("--merge-inter", action="append", default=[], metavar="MODEL=FILE",
                   help="interaction model MODEL: an earlier .inter whose rows (user_id, item_id, timestamp) lead "
                        "the exported one; repeat for several models")
    p.set_defaults(func=cmd_logs_export)


def cmd_logs_export(args) -> int:
    import sys

    from service.feedback.export import export, parse_pairs, summary
    from service.batch_io import pyarrow

    pyarrow()  # not installed: say so before reading the log
    news, merge = parse_pairs(args.news, "--news"), parse_pairs(args.merge_inter, "--merge-inter")
    reader = log_source(args)
    result = export(reader.records(args.since, args.until), args.out, args.window, news, merge, args.event_types)
    for warning in result["warnings"]:
        print("recserve: warning: " + warning, file=sys.stderr)
    print(summary(result, reader.partial))
    return 0


def add_evaluate_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="replay the logged impressions through a candidate bundle",
                       description="Rank the logged impressions that got a click with a candidate bundle, as the "
                                   "service would, and print its metrics next to those of the rankings served "
                                   "(/rank: group AUC, MRR, nDCG@5, nDCG@10; /recommend: hit@k, nDCG@k, k the "
                                   "number of items shown).")
    p.add_argument("--bundle", type=Path, required=True, help="a bundle folder, or ARTIFACTS/<model> (uses LATEST)")
    p.add_argument("--model", default=None, help="the logged model whose impressions to replay (default: the "
                                                  "bundle's model name)")
    add_log_options(p)
    p.add_argument("--json", type=Path, default=None, metavar="FILE", help="also write the report as JSON")
    p.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args) -> int:
    import json

    from service.feedback.evaluate import evaluate, table

    if not ((args.bundle / "manifest.json").is_file() or (args.bundle / "LATEST").is_file()):
        raise FileNotFoundError(f"--bundle {args.bundle}: not a bundle folder (no manifest.json) "
                                "nor a model folder (no LATEST)")
    if args.json is not None and not args.json.parent.is_dir():
        raise FileNotFoundError(f"--json {args.json}: folder {args.json.parent} does not exist")
    reader = log_source(args)
    report = evaluate(reader.records(args.since, args.until), args.bundle, args.model, args.window,
                      args.event_types)
    print(table(report))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 0
