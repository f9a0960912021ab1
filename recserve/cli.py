"""`recserve`: one command over both halves. training/cli.py adds train, export and data; service/cli.py adds
serve and recommend. Neither half imports the other, and the serving image (no training/, no torch) gets the
service's commands alone."""
from __future__ import annotations

import argparse
import logging
import sys
from types import ModuleType

from recserve.options import Parser, UsageError


def halves() -> list[ModuleType]:
    """The command modules installed here: the service's always, training's where it is installed."""
    from service import cli as service_cli

    try:
        from training import cli as training_cli
    except ModuleNotFoundError as err:
        if err.name not in ("training", "models"):
            raise
        return [service_cli]  # the serving image installs neither
    return [training_cli, service_cli]


def build_parser(parts: list[ModuleType] | None = None) -> argparse.ArgumentParser:
    parser = Parser(prog="recserve", description="Train, export and serve recommenders.")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="debug logging, and the traceback of an error (otherwise one line)")
    sub = parser.add_subparsers(dest="command", required=True)
    for part in parts or halves():
        part.add_commands(sub)
    return parser


# A path the user gave that cannot be used (`--dest a-file/x`, `--out` where one may not write): the user's to fix.
PATH_ERRORS = (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError, FileExistsError)


def message(err: Exception) -> str:
    """What to print of a user error: an OS error as "<path>: <problem>", anything else as it says."""
    if isinstance(err, OSError) and err.filename and err.strerror:
        return f"{err.filename}: {err.strerror}"
    return str(err)


def main(argv: list[str] | None = None) -> int:
    parts = halves()
    args = build_parser(parts).parse_args(argv)
    if args.command != "serve":  # the service configures its own logging (a second handler would print twice)
        logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                            format="%(levelname)s %(name)s: %(message)s")
    errors = (UsageError, *PATH_ERRORS, *(e for part in parts for e in part.user_errors()))
    try:
        return args.func(args)
    except errors as err:
        if args.verbose:
            raise
        # One line, like argparse's errors: some messages carry a library's multi-line text (onnxruntime's).
        print("recserve: error: " + " ".join(line.strip() for line in message(err).splitlines()), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
