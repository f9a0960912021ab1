"""The service's half of `recserve` (recserve/cli.py): serve the bundles, score users in bulk. Torch-free,
like the rest of service/: these commands run in the serving image."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def add_commands(sub) -> None:
    """The service's commands on the `recserve` parser: serve, recommend, experiments report."""
    from service.experiments.cli import add_experiments_parser

    add_serve_parser(sub)
    add_recommend_parser(sub)
    add_experiments_parser(sub)


def user_errors() -> tuple[type[Exception], ...]:
    """Errors of bad input that the command line reports in one line."""
    from bundle.contract import BundleError
    from service.batch_io import BatchInputError
    from service.config import SettingsError
    from service.experiments.config import ExperimentsError

    return BundleError, FileNotFoundError, SettingsError, BatchInputError, ExperimentsError


def add_serve_parser(sub) -> None:
    p = sub.add_parser("serve", help="serve the bundles over HTTP",
                       description="Start the FastAPI service (uvicorn) on the LATEST bundle of every model.")
    p.add_argument("--artifacts", type=Path, default=None, help="artifacts folder (default: $RECSERVE_ARTIFACTS or artifacts)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--workers", type=int, default=1, help="uvicorn worker processes (default 1)")
    p.add_argument("--timeout-graceful-shutdown", type=positive_seconds, default=None, metavar="SECONDS",
                   help="on SIGTERM, wait at most this long for requests in flight before closing (default: "
                        "as long as they take); keep it below the orchestrator's grace period")
    p.set_defaults(func=cmd_serve)


def positive_seconds(text: str) -> int:
    """A whole number of seconds, at least 1 (uvicorn's own option takes whole seconds too)."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of seconds: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 second, got {text!r}")
    return value


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
    p.add_argument("--k", type=int, default=10, help="items per user (default 10)")
    p.add_argument("--out", type=Path, required=True, help="output file: JSON lines, or Parquet if it ends in .parquet")
    p.add_argument("--batch-size", type=int, default=256, help="users per user-encoder call (default 256)")
    p.add_argument("--include-history", action="store_true", help="do not leave out items the user already has")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local: this process (default); ray: Ray actors (pip install 'recserve[ray]')")
    p.add_argument("--actors", type=positive_int, default=1,
                   help="--engine ray: actors, each loading the bundle once (default 1)")
    p.add_argument("--cpus-per-actor", type=positive_float, default=1.0,
                   help="--engine ray: CPUs each actor holds, and its onnxruntime threads (default 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_recommend)


def positive_int(text: str) -> int:
    import argparse

    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return int(text)


def positive_float(text: str) -> float:
    import argparse

    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {text!r}")
    return value


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
