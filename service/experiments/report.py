"""`recserve experiments report NAME`: the readout of an experiment from the feedback log, by the same
statistics as GET /experiments/NAME (readout.py).

Impressions are the experiment's live impressions (arm "<NAME>/<arm>", not shadow); clicks are the clicked
items attributed to them by service/feedback/join.py: events naming the impression's request_id within the
attribution window, on items it showed. Online, the counters count every item posted with a recorded answer's
request_id within the window, so a click on an item the answer did not show counts there and not here.
"""
from __future__ import annotations

from collections.abc import Iterable

from service.experiments.readout import readout
from service.feedback.join import DEFAULT_WINDOW_S, CLICK, join


def counts(name: str, log: Iterable[dict], window_s: float = DEFAULT_WINDOW_S,
           click_types: Iterable[str] = (CLICK,)) -> dict[str, dict[str, int]]:
    """arm -> {"impressions", "clicks"} of experiment `name` in `log` (records in time order, as the reader
    gives them)."""
    prefix, found = f"{name}/", {}
    for joined in join(log, window_s, click_types):
        if joined.type != "impression" or joined.shown.shadow:
            continue
        arm = joined.shown.record.get("arm", "")
        if arm.startswith(prefix):
            row = found.setdefault(arm[len(prefix):], {"impressions": 0, "clicks": 0})
            row["impressions"] += 1
            row["clicks"] += len(joined.shown.clicked)
    return found


def report(name: str, control: str, log: Iterable[dict], window_s: float = DEFAULT_WINDOW_S,
           click_types: Iterable[str] = (CLICK,)) -> dict:
    """The readout of `name` from the log; arms in name order, the control first."""
    found = counts(name, log, window_s, click_types)
    arms = [control, *sorted(a for a in found if a != control)]
    return readout(name, control, arms, found)
