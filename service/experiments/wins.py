"""Interleaved experiments' outcomes online: which arm won each impression, counted as clicks come.

An impression's outcome is decided by its clicked items, each credited to its team (the arm that placed it):
the arm with more clicked items wins, as many is a tie, no click is no outcome. An item clicked twice counts
once (as the log's join counts it: service/experiments/report.py decides outcomes the same way).

Clicks reach any worker or replica, and a later click can change an impression's outcome (a win becomes a tie),
so the clicked items of each impression are kept where every process sees them, and the counters move with
each change: with Redis, a hash per clicked impression, `<prefix>:{exp}:<experiment>:clicked:<request id>`
(item -> arm, expiring after the attribution window), updated in one MULTI/EXEC that reads it before and after
the new items are set, so each update sees a consistent (before, after) and the counters' increments add up
whatever the order of concurrent updates; then, per experiment, `<prefix>:{exp}:<experiment>:interleaved`
gets HINCRBY on `wins:<arm>`, `ties` and `clicks:<arm>` (distinct clicked items credited to the arm). Setting an
item already set changes nothing, so a click posted twice, or a flush retried, counts once.

As ArmCounts (counters.py): a click adds to an in-process list (under a lock), the feedback recorder's I/O
thread flushes it; what Redis refuses is kept for the next flush (bounded: `MAX_PENDING` impressions, beyond
which new clicks are dropped). Without Redis this process keeps the clicked items (the last `size`
impressions) and the totals."""
from __future__ import annotations

import threading
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Mapping

from service.cache import RedisStore

TIE = ""  # the outcome of an impression whose arms got as many clicks (no arm has this name)
MAX_PENDING = 100_000


def outcome(clicks: Mapping[str, int]) -> str | None:
    """The winning arm of one impression from its clicked items per arm; TIE, or None when nothing was clicked."""
    counts = [(n, arm) for arm, n in clicks.items() if n > 0]
    if not counts:
        return None
    counts.sort(reverse=True)
    return TIE if len(counts) > 1 and counts[0][0] == counts[1][0] else counts[0][1]


def changes(before: Mapping[str, str], after: Mapping[str, str]) -> Counter:
    """The counters' increments (field -> n) when an impression's clicked items (item -> arm) go from `before`
    to `after`."""
    was, now = Counter(before.values()), Counter(after.values())
    moved = Counter({f"clicks:{arm}": now[arm] - was[arm] for arm in now if now[arm] != was[arm]})
    old, new = outcome(was), outcome(now)
    if old != new:
        if old is not None:
            moved[_field(old)] -= 1
        moved[_field(new)] += 1
    return moved


def _field(winner: str) -> str:
    return "ties" if winner == TIE else f"wins:{winner}"


class Wins:
    def __init__(self, writer: RedisStore | None = None, reader: RedisStore | None = None, prefix: str = "",
                 window_s: float = 3600.0, size: int = 200_000):
        self.writer, self.reader, self.prefix, self.window_s, self.size = writer, reader, prefix, window_s, size
        self._clicks: list[tuple[str, str, dict[str, str]]] = []  # (experiment, request id, item -> arm)
        self._moves: dict[tuple[str, str], int] = defaultdict(int)  # (experiment, field) -> n, not yet counted
        self._seen: OrderedDict[tuple[str, str], dict[str, str]] = OrderedDict()  # without Redis
        self._totals: dict[tuple[str, str], int] = defaultdict(int)  # without Redis
        self._lock = threading.Lock()

    def impression_key(self, experiment: str, request_id: str) -> str:
        return f"{self.prefix}:{{exp}}:{experiment}:clicked:{request_id}"

    def key(self, experiment: str) -> str:
        return f"{self.prefix}:{{exp}}:{experiment}:interleaved"

    def clicked(self, experiment: str, request_id: str, items: Mapping[str, str]) -> None:
        """Items of an interleaved impression were clicked (item -> its arm); called on the request path."""
        with self._lock:
            if len(self._clicks) < MAX_PENDING:
                self._clicks.append((experiment, request_id, dict(items)))

    def pending(self) -> bool:
        return bool(self._clicks or self._moves)

    def flush(self) -> None:
        """Decide the outcomes the queued clicks change and count them (Redis, or this process); raises when Redis
        refuses (what it refused is kept)."""
        with self._lock:
            clicks, self._clicks = self._clicks, []
        if self.writer is None:
            self._flush_local(clicks)
            return
        if clicks:
            try:
                moves = self._decide(clicks)
            except Exception:
                with self._lock:
                    self._clicks[:0] = clicks
                raise
            with self._lock:
                for key, n in moves.items():
                    self._moves[key] += n
        with self._lock:
            moves, self._moves = self._moves, defaultdict(int)
        if not moves:
            return
        try:
            pipe = self.writer.client.pipeline(transaction=False)
            for (experiment, field), n in moves.items():
                if n:
                    pipe.hincrby(self.key(experiment), field, n)
            pipe.execute()
        except Exception:
            with self._lock:
                for key, n in moves.items():
                    self._moves[key] += n
            raise

    def _decide(self, clicks: list[tuple[str, str, dict[str, str]]]) -> dict[tuple[str, str], int]:
        """Set the clicked items of each impression in one transaction, reading each before and after."""
        pipe = self.writer.client.pipeline(transaction=True)
        ttl = int(self.window_s) + 120  # the window, plus the flushes' delay
        for experiment, request_id, items in clicks:
            key = self.impression_key(experiment, request_id)
            pipe.hgetall(key)
            pipe.hset(key, mapping=items)
            pipe.expire(key, ttl)
            pipe.hgetall(key)
        replies = pipe.execute()
        moves: dict[tuple[str, str], int] = defaultdict(int)
        for i, (experiment, _, _) in enumerate(clicks):
            before, after = (_decoded(replies[4 * i]), _decoded(replies[4 * i + 3]))
            for field, n in changes(before, after).items():
                moves[(experiment, field)] += n
        return moves

    def _flush_local(self, clicks: list[tuple[str, str, dict[str, str]]]) -> None:
        with self._lock:
            for experiment, request_id, items in clicks:
                before = self._seen.get((experiment, request_id), {})
                after = {**before, **items}
                self._seen[(experiment, request_id)] = after
                self._seen.move_to_end((experiment, request_id))
                for field, n in changes(before, after).items():
                    self._totals[(experiment, field)] += n
            while len(self._seen) > self.size:
                self._seen.popitem(last=False)

    def read(self, experiment: str) -> dict:
        """{"wins": {arm: n}, "ties": n, "clicks": {arm: n}} as flushed so far (Redis: every replica's)."""
        if self.reader is None:
            with self._lock:
                fields = {f: n for (e, f), n in self._totals.items() if e == experiment}
        else:
            fields = {k.decode(): int(v) for k, v in self.reader.client.hgetall(self.key(experiment)).items()}
        found: dict = {"wins": {}, "ties": fields.pop("ties", 0), "clicks": {}}
        for field, n in fields.items():
            kind, _, arm = field.partition(":")
            if kind in ("wins", "clicks"):
                found[kind][arm] = n
        return found


def _decoded(raw: Mapping[bytes, bytes]) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in raw.items()}
