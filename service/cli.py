"""The service's half of `recserve` (recserve/cli.py): serve the bundles, score users in bulk. Torch-free,
like the rest of service/: these commands run in the serving image."""
from __future__ import annotations

from pathlib import Path


def add_commands(sub) -> None:
    """The service's commands on the `recserve` parser: serve, recommend."""
    add_serve_parser(sub)
    add_recommend_parser(sub)


def user_errors() -> tuple[type[Exception], ...]:
    """Errors of bad input that the command line reports in one line."""
    from bundle.contract import BundleError
    from service.config import SettingsError

    return BundleError, FileNotFoundError, SettingsError


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
                                   '"fallback": <kind>.')
    p.add_argument("--bundle", type=Path, required=True, help="a bundle folder, or ARTIFACTS/<model> (uses LATEST)")
    p.add_argument("--users", type=Path, required=True, help="text file with one user id per line")
    p.add_argument("--k", type=int, default=10, help="items per user (default 10)")
    p.add_argument("--out", type=Path, required=True, help="output JSON-lines file")
    p.add_argument("--batch-size", type=int, default=256, help="users per user-encoder call (default 256)")
    p.add_argument("--include-history", action="store_true", help="do not leave out items the user already has")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_recommend)


def cmd_recommend(args) -> int:
    import json

    from tqdm import tqdm

    from service.batch import load_for_batch, recommend_users

    check_recommend_paths(args)  # before loading the bundle, which takes a while
    user_ids = [line.strip() for line in args.users.read_text().splitlines() if line.strip()]
    model = load_for_batch(args.bundle)
    errors = fallbacks = 0
    tmp = args.out.with_name(args.out.name + ".tmp")
    with open(tmp, "w") as out, tqdm(total=len(user_ids), disable=args.no_progress, unit="user") as bar:
        for record in recommend_users(model, user_ids, args.k, args.batch_size, not args.include_history):
            errors += "error" in record
            fallbacks += "fallback" in record
            out.write(json.dumps(record) + "\n")
            bar.update(1)
    tmp.replace(args.out)  # never leave a half-written result under the final name
    print(f"{len(user_ids) - errors} users scored ({fallbacks} of them unknown to the model: the fallback ranking), "
          f"{errors} skipped (see their 'error'): {args.out}")
    return 0


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
