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
import contextlib
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
LOG, ATTRIBUTION, COUNTERS = "feedback log", "click attribution", "experiment counters"  # what can fail
CHUNK = 50  # records made and encoded between two yields to the requests (~1 ms)
COLUMN_CHUNK = 500  # answers encoded together, as one record, between two yields (~1 ms)


class Pending(Protocol):
    """What a request queues that is not a finished record: an answer, whose record and summary the recorder
    makes (service/feedback/online.py, `Answer`), so the request pays for neither."""

    def record(self) -> dict | None:
        """The log record, None when the log is off."""

    def shown(self) -> tuple[str, float, Summary] | None:
        """(request id, time, summary) for click attribution."""

    # optional, on the class: `encode_many(items) -> (lines, [(request id, time, encoded summary)])`, which the
    # recorder calls with many queued items of that class at once instead of `record` and `shown` one by one


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
        # the targets failing now ("feedback log", "click attribution", "experiment counters"): each outage is
        # logged once when it starts and once when it ends; only the log's own switches on the probes
        self._failing: set[str] = set()
        self._bad_logged = False
        self._dropped = metrics.child(metrics.log_dropped, "buffer_full")

    def start(self) -> None:
        """Begin writing, from the running event loop (the app's lifespan)."""
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="recserve-feedback")
        self._task.add_done_callback(_log_failure)

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
                self._io, self._attempt, COUNTERS, self.counts.flush, 0)

    async def _drain(self) -> None:
        """Write what is queued now, a batch at a time; after a failure, wait `retry_s` (unless stopping). What
        comes meanwhile waits for the next wake: draining until the queue was empty wrote, under load, what
        the last write's wait had let in, ~100 answers 25 times a second, each write's fixed cost (a pipeline,
        two round trips) paid for a few answers (+13 us of CPU an answer; docs/benchmarks.md 9.1)."""
        queued = len(self._queue)
        while queued > 0 and self._queue:
            if len(self._queue) <= min(self.batch, queued):  # the usual case: the whole queue, swapped for a new one
                taken, self._queue = list(self._queue), deque()
            else:
                popleft = self._queue.popleft
                taken = [popleft() for _ in range(min(self.batch, queued))]
            queued -= len(taken)
            if LOG in self._failing:  # try a few first: while the sink is down, a batch is dropped unencoded
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
        False when the sink failed (the batch's records are dropped). A record that cannot be made is dropped
        and counted alone (`reason="encode_error"`, logged the first time): it never stops the others.
        Answers that encode many at once (`encode_many`: the routes' answers, service/feedback/columns.py) are
        taken apart from the rest, `COLUMN_CHUNK` of them a record; the lines' order is not the answers'
        (readers order records by `ts`)."""
        lines, shown, together = [], [], {}
        for start in range(0, len(entries), CHUNK):
            for item in entries[start:start + CHUNK]:
                many = getattr(type(item), "encode_many", None)
                if many is not None:
                    together.setdefault(many, []).append(item)
                    continue
                with self._counting_errors(1):
                    if isinstance(item, dict):
                        lines.append(encode(item))
                        continue
                    record, summary = item.record(), item.shown()
                    if record is not None:
                        lines.append(encode(record))
                    if summary is not None:
                        request_id, ts, summary = summary
                        shown.append((request_id, ts, summary.encode()))
            await asyncio.sleep(0)  # the requests waiting go first
        for encode_many, items in together.items():
            for start in range(0, len(items), COLUMN_CHUNK):
                chunk = items[start:start + COLUMN_CHUNK]
                with self._counting_errors(len(chunk)):
                    more_lines, more_shown = encode_many(chunk)
                    lines += more_lines
                    shown += more_shown
                await asyncio.sleep(0)
        return await asyncio.get_running_loop().run_in_executor(self._io, self._store, lines, shown)

    @contextlib.contextmanager
    def _counting_errors(self, records: int):
        """A bug or a value the encoder refuses drops these `records` only, counted and logged once."""
        try:
            yield
        except Exception:
            self.metrics.child(self.metrics.log_dropped, "encode_error").inc(records)
            if not self._bad_logged:
                log.exception("feedback log: a record could not be made; dropped (and counted, "
                              "recserve_log_dropped_total{reason=\"encode_error\"}, without more lines)")
                self._bad_logged = True

    def _store(self, lines: list[bytes], shown: list) -> bool:
        """In the I/O thread: the summaries to the attribution, the lines to the sink. False when the sink
        failed; the attribution failing (its Redis down while the log goes to files) loses summaries only."""
        if shown and self.shown is not None:
            self._attempt(ATTRIBUTION, lambda: self.shown.remember(shown), 0)
        if not lines or self.sink is None:
            return True
        if self._attempt(LOG, lambda: self.sink.write(lines), len(lines)):
            self.metrics.log_written.inc(len(lines))
            return True
        return False

    def _attempt(self, what: str, write, records: int) -> bool:
        """`write()`; a failure is counted (`records` dropped) and logged once per outage of `what`."""
        try:
            write()
        except Exception as exc:  # any sink's failure: counted and logged, never raised into a request
            if records:
                self.metrics.child(self.metrics.log_dropped, "sink_error").inc(records)
            if what not in self._failing:
                log.error("%s: cannot write (%s: %s); %sretrying every %.1fs", what, type(exc).__name__, exc,
                          "dropping records and " if records else "", self.retry_s)
                self._failing.add(what)
            return False
        if what in self._failing:
            log.warning("%s: writing again", what)
            self._failing.discard(what)
        return True

    async def close(self, timeout_s: float = 5.0) -> None:
        """Write what is queued (for at most `timeout_s`), then close the sink."""
        self._stopping = True
        if self._task is not None:
            self._wake.set()
            try:
                await asyncio.wait_for(self._task, timeout_s)
            except TimeoutError:
                log.warning("feedback log: %d records not written at shutdown", len(self._queue))
            except Exception:  # the task died earlier: `_log_failure` said why; the sink still closes
                pass
        if self.sink is not None:
            await asyncio.get_running_loop().run_in_executor(self._io, self.sink.close)
        self._io.shutdown(wait=False)


def _log_failure(task: asyncio.Task) -> None:
    """The recorder's task ended by an exception (a bug): say so, or records would only pile up unnoticed."""
    if not task.cancelled() and task.exception() is not None:
        log.error("feedback log: the recorder stopped: %r; records are no longer written", task.exception())
