"""`recserve experiments report`: an experiment's readout from the feedback log (report.py), as JSON; `--png`
draws it (chart.py)."""
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
    p.add_argument("--png", type=Path, default=None, metavar="FILE",
                   help="also draw the readout into FILE, a PNG: CTR per arm with 95%% intervals, and an "
                        "interleaved experiment's wins, losses and ties (needs matplotlib: the charts extra)")
    p.set_defaults(func=cmd_report)


def cmd_report(args) -> int:
    import orjson

    from service.experiments.config import ExperimentsError, read
    from service.cli import log_source
    from service.experiments.report import report

    control, arms = args.control, ()
    if control is None:
        if args.config is None:
            raise ExperimentsError("--control: give the control arm, or --config naming the experiments file")
        experiment = read(args.config).get(args.name)
        if experiment is None:
            raise ExperimentsError(f"{args.config}: no experiment {args.name!r}")
        control, arms = experiment.control.name, [a.name for a in experiment.arms]
    reader = log_source(args)
    found = report(args.name, control, reader.records(args.since, args.until), args.window, args.event_types, arms)
    print(orjson.dumps(found, option=orjson.OPT_INDENT_2).decode())
    if args.png is not None:
        from service.experiments.chart import write_png

        write_png(found, args.png)
    return 0
