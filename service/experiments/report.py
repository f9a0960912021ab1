"""`recserve experiments report NAME --source FOLDER`: the readout of an experiment from the feedback log, by
the same statistics as GET /experiments/NAME (readout.py).

Impressions are the experiment's live impressions (arm "<NAME>/<arm>", not shadow); clicks are the items of
events whose request_id names one of them. Online, a click counts only within RECSERVE_ATTRIBUTION_WINDOW_S
of its answer and only for sampled answers; the log has every recorded click, so the report may count a few
late clicks more.

The log is read with a small iterator over the files sink's JSON Lines (`records`); service/feedback/reader.py
(time ranges, Redis streams, damaged files), written beside this work, should replace it once both are merged."""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import orjson

from service.experiments.readout import readout
from service.feedback.records import FILE_PREFIX, FILE_SUFFIX


def records(folder: Path) -> Iterator[dict]:
    """Every complete record of the files under `folder` (a line cut short at a file's end is skipped)."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder of feedback log files")
    for path in sorted(folder.glob(f"{FILE_PREFIX}*{FILE_SUFFIX}")):
        text = path.read_bytes()
        complete = text[:text.rfind(b"\n") + 1]
        for line in complete.splitlines():
            if line.strip():
                yield orjson.loads(line)


def counts(name: str, log: Iterable[dict]) -> dict[str, dict[str, int]]:
    """arm -> {"impressions", "clicks"} of experiment `name` in `log` (any order of records)."""
    prefix, arm_of, clicks = f"{name}/", {}, {}
    found: dict[str, dict[str, int]] = {}
    for record in log:
        if record.get("type") == "impression" and str(record.get("arm", "")).startswith(prefix) \
                and not record.get("shadow"):
            arm = record["arm"][len(prefix):]
            arm_of[record["request_id"]] = arm
            found.setdefault(arm, {"impressions": 0, "clicks": 0})["impressions"] += 1
        elif record.get("type") == "event" and record.get("request_id"):
            clicks[record["request_id"]] = clicks.get(record["request_id"], 0) + len(record["items"])
    for request_id, n in clicks.items():
        arm = arm_of.get(request_id)
        if arm is not None:
            found[arm]["clicks"] += n
    return found


def report(name: str, control: str, log: Iterable[dict]) -> dict:
    """The readout of `name` from the log; arms in name order, the control first."""
    found = counts(name, log)
    arms = [control, *sorted(a for a in found if a != control)]
    return readout(name, control, arms, found)
