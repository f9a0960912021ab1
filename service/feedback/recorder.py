"""Records written off the request path: a request appends to a bounded buffer and goes on; a task on the
event loop takes batches from it, makes and encodes the records in small chunks between requests, and hands
each batch to one I/O thread that writes it to the sink (and the answers' summaries to the click
attribution). Nothing here ever blocks or fails a request:

- a full buffer drops the new record (`recserve_log_dropped_total{reason="buffer_full"}`);
- a batch the sink refuses (Redis down, disk full) is dropped (`reason="sink_error"`), the error logged once
  per outage, and the writer waits `retry_s` before trying again, so a dead sink costs no busy loop; records
  made meanwhile wait in the buffer up to its bound. While it fails, each try encodes only `PROBE` records
  and drops the rest of the batch unencoded, so an outage costs the serving process less, not more. Writing
  resumes by itself when the sink answers.

Why the event loop and not a thread: encoding is pure Python, and a writer thread encoding beside the loop
took the GIL from it at every I/O the loop made (the handoffs cost as much as the encoding: docs/benchmarks.md,
"The feedback log"). On the loop, the work is done in chunks of `CHUNK` records (~1 ms), each followed by a
yield to the requests waiting; only the sink's I/O, which releases the GIL, runs in the thread.

The buffer's bound is the memory bound: queued answers hold references to what the request already built (the
rows, the scores array).
"""
from __future__ import annotations

import asyncio
import logging
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from service.experiments.counters import ArmCounts
from service.feedback.attribution import Shown, Summary
from service.feedback.records import encode
from service.feedback.sinks import Sink
from service.metrics import Metrics

log = logging.getLogger("recserve.feedback")
PROBE = 10  # records tried first while the sink is failing
CHUNK = 50  # records made and encoded between two yields to the requests (~1 ms)


class Pending(Protocol):
    """What a request queues that is not a finished record: an answer, whose record and summary the writer
    thread makes (service/feedback/online.py, `Answer`), so the request pays for neither."""

    def record(self) -> dict | None:
        """The log record, None when the log is off."""

    def shown(self) -> tuple[str, float, Summary] | None:
        """(request id, time, summary) for click attribution, None when attribution took it already."""


class Recorder:
    def __init__(self, sink: Sink | None, shown: Shown | None, metrics: Metrics, buffer: int, batch: int,
                 flush_s: float, retry_s: float, counts: ArmCounts | None = None):
        self.sink, self.shown, self.metrics = sink, shown, metrics
        self.counts = counts if counts is not None else ArmCounts()  # experiments' per-arm counters
        self.capacity, self.batch, self.flush_s, self.retry_s = buffer, batch, flush_s, retry_s
        self._queue: deque[dict | Pending] = deque()
        self._io = ThreadPoolExecutor(1, thread_name_prefix="recserve-feedback")
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._stopping = False
        self._failing = False  # an outage is being logged: say once when it starts and once when it ends
        self._dropped = metrics.child(metrics.log_dropped, "buffer_full")

    def start(self) -> None:
        """Begin writing, from the running event loop (the app's lifespan)."""
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="recserve-feedback")

    def add(self, item: dict | Pending) -> None:
        """Queue a record, or an answer that makes its record later; never blocks. Called on the event loop."""
        if len(self._queue) >= self.capacity:
            self._dropped.inc()
            return
        self._queue.append(item)
        if len(self._queue) == self.batch and self._wake is not None:  # a full batch need not wait the flush
            self._wake.set()

    def pending(self) -> int:
        return len(self._queue)

    async def _run(self) -> None:
        while not self._stopping:
            try:
                await asyncio.wait_for(self._wake.wait(), self.flush_s)
            except TimeoutError:
                pass
            self._wake.clear()
            await self._drain()
            await self._flush_counts()
        await self._drain()  # what came since: written (or, while the sink fails, counted as dropped)
        await self._flush_counts()

    async def _flush_counts(self) -> None:
        """The experiments' per-arm counters to their store (Redis), in the I/O thread, when any moved."""
        if self.counts.pending():
            await asyncio.get_running_loop().run_in_executor(
                self._io, self._attempt, "experiment counters", self.counts.flush, 0)

    async def _drain(self) -> None:
        """Write what is queued, a batch at a time; after a failure, wait `retry_s` (unless stopping)."""
        while self._queue:
            taken = [self._queue.popleft() for _ in range(min(self.batch, len(self._queue)))]
            if self._failing:  # try a few first: while the sink is down, a batch is dropped unencoded
                probe, taken = taken[:PROBE], taken[PROBE:]
                if not await self._write(probe):
                    if taken:
                        self.metrics.child(self.metrics.log_dropped, "sink_error").inc(len(taken))
                    if self._stopping:
                        continue
                    await asyncio.sleep(self.retry_s)  # no busy loop; the buffer bounds what waits
                    return
            if not await self._write(taken) and not self._stopping:
                await asyncio.sleep(self.retry_s)
                return

    async def _write(self, entries: list[dict | Pending]) -> bool:
        """Make and encode one batch's records and summaries here, in chunks; store them in the I/O thread.
        False when the sink or the attribution failed (the batch is dropped)."""
        lines, shown = [], []
        for start in range(0, len(entries), CHUNK):
            for item in entries[start:start + CHUNK]:
                if isinstance(item, dict):
                    lines.append(encode(item))
                    continue
                record, summary = item.record(), item.shown()
                if record is not None:
                    lines.append(encode(record))
                if summary is not None:
                    shown.append(summary)
            await asyncio.sleep(0)  # the requests waiting go first
        return await asyncio.get_running_loop().run_in_executor(self._io, self._store, lines, shown)

    def _store(self, lines: list[bytes], shown: list) -> bool:
        """In the I/O thread: the summaries to the attribution, the lines to the sink."""
        ok = True
        if shown and self.shown is not None:
            ok = self._attempt("click attribution", lambda: self.shown.remember(shown), 0)
        if lines and self.sink is not None:
            if self._attempt("feedback log", lambda: self.sink.write(lines), len(lines)):
                self.metrics.log_written.inc(len(lines))
            else:
                ok = False
        if ok and self._failing:
            log.warning("feedback log: writing again")
            self._failing = False
        return ok

    def _attempt(self, what: str, write, records: int) -> bool:
        try:
            write()
            return True
        except Exception as exc:  # any sink's failure: counted and logged, never raised into a request
            if records:
                self.metrics.child(self.metrics.log_dropped, "sink_error").inc(records)
            if not self._failing:
                log.error("%s: cannot write (%s: %s); dropping records and retrying every %.1fs", what,
                          type(exc).__name__, exc, self.retry_s)
                self._failing = True
            return False

    async def close(self, timeout_s: float = 5.0) -> None:
        """Write what is queued (for at most `timeout_s`), then close the sink."""
        self._stopping = True
        if self._task is not None:
            self._wake.set()
            try:
                await asyncio.wait_for(self._task, timeout_s)
            except TimeoutError:
                log.warning("feedback log: %d records not written at shutdown", len(self._queue))
        if self.sink is not None:
            await asyncio.get_running_loop().run_in_executor(self._io, self.sink.close)
        self._io.shutdown(wait=False)
