"""Join the log's clicks to the impressions they answer, by request_id, within an attribution window.

An impression waits `window_s` seconds of log time for its clicks, then is handed on with them and forgotten:
memory holds one window's impressions, not the log's. An event is attributed when an impression with its
request_id is still waiting, its user is the impression's (or the impression had none: a request by history
alone), and it clicked an item that impression showed; only those items become the impression's clicks. An
event of a type outside `click_types` is passed on, never attributed. A shadow arm's impression shares the
served one's request_id and gets the same clicks (on the items it ranked too), so experiments can compare
arms; an event counts as attributed only through an impression a user saw.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import orjson

DEFAULT_WINDOW_S = 900.0  # the service's attribution_window_s default: offline attribution = online
CLICK = "click"


class Shown:
    """A waiting impression: its record, kept as JSON bytes (a fifth of a dict's memory: a window of a busy
    service's answers is millions of them; its items are read from them again only when a click names it), and
    its clicks so far: items it showed, in click order, each once."""

    __slots__ = ("raw", "ts", "user", "shadow", "clicked")

    def __init__(self, record: dict):
        self.raw = bytes(memoryview(orjson.dumps(record)))  # a copy: orjson's own bytes keep 8 KB of capacity
        self.ts, self.user, self.shadow = record["ts"], record.get("user"), bool(record.get("shadow"))
        self.clicked: list[str] = []

    @property
    def record(self) -> dict:
        return orjson.loads(self.raw)


@dataclass
class Joined:
    """One output of `join`: an impression whose window closed (`shown`), an event (`record`, `attributed`), or
    an added item (`record`)."""

    type: str
    record: dict
    shown: Shown | None = None
    attributed: bool = False


@dataclass
class JoinCounts:
    impressions: int = 0
    events: int = 0
    attributed: int = 0   # events attributed to an impression someone saw
    items: int = 0


def join(records: Iterable[dict], window_s: float = DEFAULT_WINDOW_S, click_types: Iterable[str] = (CLICK,),
         counts: JoinCounts | None = None) -> Iterator[Joined]:
    """The records, in `ts` order, as `Joined`: impressions when their window closes (so a little after their
    turn), events and items at once."""
    clicks = frozenset(click_types)
    counts = counts if counts is not None else JoinCounts()
    waiting: OrderedDict[str, list[Shown]] = OrderedDict()  # request_id -> its impressions, oldest first

    def closed(now: float) -> Iterator[Joined]:
        while waiting:
            request_id, shown = next(iter(waiting.items()))
            if shown[0].ts + window_s >= now:
                return
            del waiting[request_id]
            for s in shown:
                yield Joined("impression", s.record, s)

    for record in records:
        yield from closed(record["ts"])
        kind = record["type"]
        if kind == "impression":
            counts.impressions += 1
            waiting.setdefault(record.get("request_id") or f"\0{counts.impressions}", []).append(Shown(record))
        elif kind == "event":
            counts.events += 1
            attributed = record.get("event", CLICK) in clicks and _attribute(record, waiting)
            counts.attributed += attributed
            yield Joined("event", record, attributed=attributed)
        else:
            counts.items += 1
            yield Joined(kind, record)
    for shown in waiting.values():
        for s in shown:
            yield Joined("impression", s.record, s)


def _attribute(event: dict, waiting: dict[str, list[Shown]]) -> bool:
    """Add the event's items to the clicks of the waiting impressions it answers; True if one a user saw."""
    request_id = event.get("request_id")
    seen = False
    for shown in waiting.get(request_id, ()) if request_id else ():
        if shown.user not in (None, event.get("user")):
            continue
        shown_items = shown.record.get("items") or ()
        hits = [i for i in event.get("items") or () if i in shown_items]
        shown.clicked.extend(i for i in dict.fromkeys(hits) if i not in shown.clicked)
        seen = seen or (bool(hits) and not shown.shadow)
    return seen
