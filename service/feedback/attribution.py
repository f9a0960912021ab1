"""Which answer a click came from, for the online metrics: request id -> (model, version, arm, the first
positions shown), kept for the attribution window. A click may reach another worker or replica than the answer
did, so with Redis the entries live there (`RedisShown`); one process without Redis keeps them itself
(`LocalShown`). The log itself keeps every position; this is only what the counters need. Either is written by
the recorder's thread with its batches, so a click within a flush (RECSERVE_FEEDBACK_FLUSH_S, 1 s) of its
answer may not find it yet: no person clicks that fast.

Redis keys: `<prefix>:{fb.<minute>}:shown`, a hash request id -> JSON summary per minute of answers, written
once per recorder batch (one HSET and one EXPIRE a minute touched, instead of a key per answer) and expiring
after the window. A lookup asks each minute of the window in one pipelined round trip.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import NamedTuple, Protocol

import orjson

from service.cache import RedisStore, send_packed

BUCKET_S = 60


class Summary(NamedTuple):
    model: str
    version: str
    arm: str
    items: list[str]  # the first positions shown, best first
    teams: list[str] | None = None  # an interleaved answer's: the arm that placed each of `items`

    def encode(self) -> bytes:
        # four fields when not interleaved: what a process of the previous version reads, during a rollout
        return orjson.dumps(list(self) if self.teams is not None else list(self[:4]))

    @classmethod
    def decode(cls, raw: bytes) -> Summary:
        return cls(*orjson.loads(raw))


class Shown(Protocol):
    def remember(self, entries: Sequence[tuple[str, float, bytes]]) -> None:
        """Keep (request id, answer time, encoded summary: `Summary.encode`) entries; may raise (the recorder
        logs and drops them)."""

    def find(self, request_id: str) -> Summary | None:
        """The answer's summary, None when unknown, older than the window, or unreadable (fails open)."""


class LocalShown:
    """In process, for one process without Redis: at most `size` answers, each for `window_s`."""

    def __init__(self, window_s: float, size: int = 200_000):
        self.window_s, self.size = window_s, size
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()  # decoded when a click asks
        self._lock = threading.Lock()

    def remember(self, entries: Sequence[tuple[str, float, bytes]]) -> None:
        with self._lock:
            for request_id, ts, summary in entries:
                self._entries[request_id] = (ts, summary)
                self._entries.move_to_end(request_id)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def find(self, request_id: str) -> Summary | None:
        found = self._entries.get(request_id)
        if found is None or time.time() - found[0] > self.window_s:
            return None
        return Summary.decode(found[1])


class RedisShown:
    """In Redis, shared by every worker and replica. `writer` (service.cache.RedisStore) serves the recorder's
    thread, `reader` (short timeouts, its own circuit breaker) the lookups on the request path: while Redis is
    down a lookup answers None at once."""

    def __init__(self, writer: RedisStore, reader: RedisStore, prefix: str, window_s: int):
        self.writer, self.reader, self.prefix, self.window_s = writer, reader, prefix, window_s

    def key(self, bucket: int) -> str:
        return f"{self.prefix}:{{fb.{bucket}}}:shown"

    def remember(self, entries: Sequence[tuple[str, float, bytes]]) -> None:
        if not entries:
            return
        request_ids, times, summaries = zip(*entries)  # columns, transposed in C
        first, last = int(min(times) // BUCKET_S), int(max(times) // BUCKET_S)
        if first == last:  # the usual case: one minute, its fields interleaved in C
            fields = [None] * (2 * len(entries))
            fields[0::2], fields[1::2] = request_ids, summaries
            by_bucket = {first: fields}
        else:
            by_bucket = {}
            for request_id, ts, summary in entries:
                by_bucket.setdefault(int(ts // BUCKET_S), []).extend((request_id, summary))
        commands = []
        for bucket, fields in by_bucket.items():
            commands.append(("HSET", self.key(bucket), *fields))
            # the whole minute lives until its last answer's window has passed (plus a flush's delay)
            commands.append(("EXPIREAT", self.key(bucket), (bucket + 1) * BUCKET_S + self.window_s + BUCKET_S))
        send_packed(self.writer.client, commands)

    def find(self, request_id: str) -> Summary | None:
        now = time.time()
        newest, oldest = int(now // BUCKET_S), int((now - self.window_s) // BUCKET_S) - 1

        def lookup():
            pipe = self.reader.client.pipeline(transaction=False)
            for bucket in range(newest, oldest - 1, -1):
                pipe.hget(self.key(bucket), request_id)
            return next((raw for raw in pipe.execute() if raw is not None), None)

        found = self.reader.call(lookup, None)
        try:
            return Summary.decode(found) if found is not None else None
        except (ValueError, TypeError):  # not a summary this version wrote: unattributed, never a 500
            return None
