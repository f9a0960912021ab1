"""Records written off the request path: a request appends to a bounded buffer and goes on; one writer thread
per process takes batches from it, encodes them and hands them to the sink (and the answers' summaries to the
click attribution). Nothing here ever blocks or fails a request:

- a full buffer drops the new record (`recserve_log_dropped_total{reason="buffer_full"}`);
- a batch the sink refuses (Redis down, disk full) is dropped (`reason="sink_error"`), the error logged once
  per outage, and the writer waits `retry_s` before trying again, so a dead sink costs no busy loop; records
  made meanwhile wait in the buffer up to its bound. Writing resumes by itself when the sink answers.

The buffer's bound is the memory bound: records hold references to what the answer already built (ids, the
scores array) and are encoded in the writer thread.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import NamedTuple

from service.experiments.counters import ArmCounts
from service.feedback.attribution import Shown, Summary
from service.feedback.records import encode
from service.feedback.sinks import Sink
from service.metrics import Metrics

log = logging.getLogger("recserve.feedback")


class Entry(NamedTuple):
    record: dict | None  # for the log (None: not sampled, or no log)
    shown: tuple[str, float, Summary] | None  # for click attribution (answers only)


class Recorder:
    def __init__(self, sink: Sink | None, shown: Shown | None, metrics: Metrics, buffer: int, batch: int,
                 flush_s: float, retry_s: float, counts: ArmCounts | None = None):
        self.sink, self.shown, self.metrics = sink, shown, metrics
        self.counts = counts if counts is not None else ArmCounts()  # experiments' per-arm counters
        self.capacity, self.batch, self.flush_s, self.retry_s = buffer, batch, flush_s, retry_s
        self._queue: deque[Entry] = deque()
        self._wake = threading.Event()
        self._stopping = False
        self._failing = False  # an outage is being logged: say once when it starts and once when it ends
        self._dropped = metrics.child(metrics.log_dropped, "buffer_full")
        self._thread = threading.Thread(target=self._run, name="recserve-feedback", daemon=True)
        self._thread.start()

    def add(self, record: dict | None, shown: tuple[str, float, Summary] | None = None) -> None:
        """Queue a record (and an answer's summary); never blocks. Called from the event loop's thread."""
        if len(self._queue) >= self.capacity:
            if record is not None:
                self._dropped.inc()
            return
        self._queue.append(Entry(record, shown))
        if len(self._queue) >= self.batch:
            self._wake.set()

    def pending(self) -> int:
        return len(self._queue)

    def _run(self) -> None:
        while True:
            self._wake.wait(self.flush_s)
            self._wake.clear()
            stopping = self._stopping
            while self._queue:
                taken = [self._queue.popleft() for _ in range(min(self.batch, len(self._queue)))]
                if not self._write(taken) and not stopping:
                    time.sleep(self.retry_s)  # the sink is down: no busy loop; the buffer bounds what waits
                    break
            self._attempt("experiment counters", self.counts.flush, 0)
            if stopping:
                return

    def _write(self, entries: list[Entry]) -> bool:
        """Hand one batch to the attribution and the sink; False when either failed (the batch is dropped)."""
        ok = True
        shown = [e.shown for e in entries if e.shown is not None]
        if shown and self.shown is not None:
            ok = self._attempt("click attribution", lambda: self.shown.remember(shown), 0)
        records = [e.record for e in entries if e.record is not None]
        if records and self.sink is not None:
            lines = [encode(r) for r in records]
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

    def close(self, timeout_s: float = 5.0) -> None:
        """Write what is buffered (for at most `timeout_s`), then close the sink."""
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout_s)
        if self.sink is not None and not self._thread.is_alive():
            self.sink.close()
