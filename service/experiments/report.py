"""`recserve experiments report NAME`: the readout of an experiment from the feedback log, by the same
statistics as GET /experiments/NAME (readout.py).

Impressions are the experiment's live impressions (arm "<NAME>/<arm>", not shadow); clicks are the clicked
items attributed to them by service/feedback/join.py: events naming the impression's request_id within the
attribution window, on items it showed. Online, the counters count every item posted with a recorded answer's
request_id within the window, so a click on an item the answer did not show counts there and not here.

A shadow arm's readout (`shadow_readout`, shadow_readout.py) pairs each of its shadow impressions with the live
impression of the same request_id: overlap@10, Kendall tau and both latencies. Jobs dropped or failed leave
no record: GET /experiments/NAME counts them.
"""
from __future__ import annotations

from collections.abc import Iterable

from service.experiments.readout import readout
from service.experiments.shadow_readout import FromLog
from service.feedback.join import DEFAULT_WINDOW_S, CLICK, join


def counts(name: str, log: Iterable[dict], window_s: float = DEFAULT_WINDOW_S,
           click_types: Iterable[str] = (CLICK,),
           shadows: dict[str, FromLog] | None = None) -> dict[str, dict[str, int]]:
    """arm -> {"impressions", "clicks"} of experiment `name` in `log` (records in time order, as the reader
    gives them); shadow impressions go to `shadows` (arm -> FromLog), each with its request's live one."""
    prefix, found = f"{name}/", {}
    live: dict = {}  # the last live impression of the experiment: join hands on a request's impressions together
    for joined in join(log, window_s, click_types):
        if joined.type != "impression":
            continue
        record = joined.shown.record
        arm = record.get("arm", "")
        if joined.shown.shadow:
            if shadows is not None and arm.startswith(prefix):
                paired = live if live.get("request_id") == record.get("request_id") else None
                shadows.setdefault(arm[len(prefix):], FromLog()).add(record, paired)
            continue
        if arm.startswith(prefix):
            live = record
            row = found.setdefault(arm[len(prefix):], {"impressions": 0, "clicks": 0})
            row["impressions"] += 1
            row["clicks"] += len(joined.shown.clicked)
    return found


def report(name: str, control: str, log: Iterable[dict], window_s: float = DEFAULT_WINDOW_S,
           click_types: Iterable[str] = (CLICK,)) -> dict:
    """The readout of `name` from the log; arms in name order, the control first, shadow arms last."""
    shadows: dict[str, FromLog] = {}
    found = counts(name, log, window_s, click_types, shadows)
    arms = [control, *sorted(a for a in found if a != control), *sorted(a for a in shadows if a not in found)]
    body = readout(name, control, arms, found)
    for arm, shadow in shadows.items():
        body["arms"][arm]["shadow_readout"] = shadow.readout()
    return body
