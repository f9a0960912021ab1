"""`recserve experiments report`: an experiment's readout from the feedback log (report.py), as JSON."""
from __future__ import annotations

import os
from pathlib import Path


def add_experiments_parser(sub) -> None:
    from service.cli import add_log_options

    experiments = sub.add_parser("experiments", help="A/B experiments between model versions",
                                 description="Read out experiments from the feedback log.")
    experiments_sub = experiments.add_subparsers(dest="experiments_command", required=True)
    p = experiments_sub.add_parser(
        "report", help="per arm impressions, clicks, CTR and lift against control, with 95%% intervals",
        description="The readout of experiment NAME from the feedback log (as GET /experiments/NAME computes it "
                    "from the online counters), printed as JSON.")
    p.add_argument("name", help="the experiment's name")
    add_log_options(p)
    p.add_argument("--control", default=None,
                   help="the control arm; default: the one the experiments file (--config) marks")
    p.add_argument("--config", type=Path, default=os.environ.get("RECSERVE_EXPERIMENTS") or None,
                   help="the experiments file (default: $RECSERVE_EXPERIMENTS)")
    p.set_defaults(func=cmd_report)


def cmd_report(args) -> int:
    import orjson

    from service.experiments.config import ExperimentsError, read
    from service.cli import log_source
    from service.experiments.report import report

    control = args.control
    if control is None:
        if args.config is None:
            raise ExperimentsError("--control: give the control arm, or --config naming the experiments file")
        experiment = read(args.config).get(args.name)
        if experiment is None:
            raise ExperimentsError(f"{args.config}: no experiment {args.name!r}")
        control = experiment.control.name
    reader = log_source(args)
    found = report(args.name, control, reader.records(args.since, args.until), args.window, args.event_types)
    print(orjson.dumps(found, option=orjson.OPT_INDENT_2).decode())
    return 0
