"""`recserve experiments report NAME`: the readout of an experiment from the feedback log, by the same
statistics as GET /experiments/NAME (readout.py).

Impressions are the experiment's live impressions (arm "<NAME>/<arm>", not shadow); clicks are the clicked
items attributed to them by service/feedback/join.py: events naming the impression's request_id within the
attribution window, on items it showed. Online, the counters count every item posted with a recorded answer's
request_id within the window, so a click on an item the answer did not show counts there and not here.

A shadow arm's readout (`shadow_readout`, shadow_readout.py) pairs each of its shadow impressions with the live
impression of the same request_id: overlap@10, Kendall tau and both latencies. Jobs dropped or failed leave
no record: GET /experiments/NAME counts them.

An interleaved experiment's impressions (arm "<NAME>/interleaved", with `teams`) are decided here as online
(wins.py): each distinct clicked item credits its team, the arm with more wins the impression, as many is a
tie. Online, only clicks on the first `RECSERVE_ATTRIBUTION_ITEMS` positions are credited (the attribution
keeps those); here every position is.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from service.experiments.config import INTERLEAVED
from service.experiments.readout import interleaving, readout
from service.experiments.shadow_readout import FromLog
from service.experiments.wins import TIE, outcome
from service.feedback.join import DEFAULT_WINDOW_S, CLICK, join


def counts(name: str, log: Iterable[dict], window_s: float = DEFAULT_WINDOW_S,
           click_types: Iterable[str] = (CLICK,), shadows: dict[str, FromLog] | None = None,
           outcomes: dict | None = None) -> dict[str, dict[str, int]]:
    """arm -> {"impressions", "clicks"} of experiment `name` in `log` (records in time order, as the reader
    gives them); shadow impressions go to `shadows` (arm -> FromLog), each with its request's live one.
    Interleaved impressions count under arm "interleaved", and when `outcomes` is given their outcomes are
    added to it ({"wins": {arm: n}, "ties": n, "clicks": {arm: n}, "arms": set of teams seen})."""
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
            if outcomes is not None and record.get("teams") is not None:
                decide(outcomes, record, joined.shown.clicked)
    return found


def decide(outcomes: dict, record: dict, clicked: list[str]) -> None:
    """Add one interleaved impression's outcome: its distinct clicked items, each credited to its team."""
    team = dict(zip(record.get("items") or (), record["teams"]))
    outcomes["arms"].update(record["teams"])
    credited = Counter(team[item] for item in dict.fromkeys(clicked) if item in team)
    for arm, n in credited.items():
        outcomes["clicks"][arm] = outcomes["clicks"].get(arm, 0) + n
    winner = outcome(credited)
    if winner == TIE:
        outcomes["ties"] += 1
    elif winner is not None:
        outcomes["wins"][winner] = outcomes["wins"].get(winner, 0) + 1


def report(name: str, control: str, log: Iterable[dict], window_s: float = DEFAULT_WINDOW_S,
           click_types: Iterable[str] = (CLICK,), arms: Iterable[str] = ()) -> dict:
    """The readout of `name` from the log; arms in name order, the control first, shadow arms last (`arms`:
    the experiment's arms, when known, listed even without impressions). With interleaved impressions,
    `interleaving` too."""
    shadows: dict[str, FromLog] = {}
    outcomes: dict = {"wins": {}, "ties": 0, "clicks": {}, "arms": set()}
    found = counts(name, log, window_s, click_types, shadows, outcomes)
    interleaved = found.pop(INTERLEAVED, None)
    live = (set(found) | outcomes["arms"] | (set(arms) - set(shadows))) - {control}
    listed = [control, *sorted(live), *sorted(a for a in shadows if a not in live and a != control)]
    body = readout(name, control, listed, found)
    for arm, shadow in shadows.items():
        body["arms"][arm]["shadow_readout"] = shadow.readout()
    others = sorted(outcomes["arms"] - {control}) or listed[1:]  # the interleaved arm: a team of the log's
    if interleaved is not None and others:
        body["interleaving"] = interleaving(control, [control, others[0]], interleaved["impressions"], outcomes)
    return body
