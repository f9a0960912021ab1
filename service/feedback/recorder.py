"""Records written off the request path: a request appends to a bounded buffer and goes on; one writer thread
per process takes batches from it, encodes them and hands them to the sink (and the answers' summaries to the
click attribution). Nothing here ever blocks or fails a request:

- a full buffer drops the new record (`recserve_log_dropped_total{reason="buffer_full"}`);
- a batch the sink refuses (Redis down, disk full) is dropped (`reason="sink_error"`), the error logged once
  per outage, and the writer waits `retry_s` before trying again, so a dead sink costs no busy loop; records
  made meanwhile wait in the buffer up to its bound. While it fails, each try encodes only `PROBE` records
  and drops the rest of the batch unencoded, so an outage costs the serving process less, not more. Writing
  resumes by itself when the sink answers.

The buffer's bound is the memory bound: records hold references to what the answer already built (ids, the
scores array) and are encoded in the writer thread.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Protocol

from service.feedback.attribution import Shown, Summary
from service.feedback.records import encode
from service.feedback.sinks import Sink
from service.metrics import Metrics

log = logging.getLogger("recserve.feedback")
PROBE = 10  # records tried first while the sink is failing


class Pending(Protocol):
    """What a request queues that is not a finished record: an answer, whose record and summary the writer
    thread makes (service/feedback/online.py, `Answer`), so the request pays for neither."""

    def record(self) -> dict | None:
        """The log record, None when the log is off."""

    def shown(self) -> tuple[str, float, Summary] | None:
        """(request id, time, summary) for click attribution, None when attribution took it already."""


class Recorder:
    def __init__(self, sink: Sink | None, shown: Shown | None, metrics: Metrics, buffer: int, batch: int,
                 flush_s: float, retry_s: float):
        self.sink, self.shown, self.metrics = sink, shown, metrics
        self.capacity, self.batch, self.flush_s, self.retry_s = buffer, batch, flush_s, retry_s
        self._queue: deque[dict | Pending] = deque()
        self._wake = threading.Event()
        self._stopping = False
        self._failing = False  # an outage is being logged: say once when it starts and once when it ends
        self._dropped = metrics.child(metrics.log_dropped, "buffer_full")
        self._thread = threading.Thread(target=self._run, name="recserve-feedback", daemon=True)
        self._thread.start()

    def add(self, item: dict | Pending) -> None:
        """Queue a record, or an answer that makes its record later; never blocks. Called from the event
        loop's thread."""
        if len(self._queue) >= self.capacity:
            self._dropped.inc()
            return
        self._queue.append(item)
        if len(self._queue) == self.batch:  # once, as the batch fills: setting an Event takes a lock
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
                if self._failing:  # try a few first: while the sink is down, a batch is dropped unencoded
                    probe, taken = taken[:PROBE], taken[PROBE:]
                    if not self._write(probe):
                        if taken:
                            self.metrics.child(self.metrics.log_dropped, "sink_error").inc(len(taken))
                        if stopping:
                            continue
                        time.sleep(self.retry_s)  # no busy loop; the buffer bounds what waits
                        break
                if not self._write(taken) and not stopping:
                    time.sleep(self.retry_s)
                    break
            if stopping:
                return

    def _write(self, entries: list[dict | Pending]) -> bool:
        """Hand one batch to the attribution and the sink; False when either failed (the batch is dropped)."""
        ok, records, shown = True, [], []
        for item in entries:
            if isinstance(item, dict):
                records.append(item)
                continue
            record, summary = item.record(), item.shown()
            if record is not None:
                records.append(record)
            if summary is not None:
                shown.append(summary)
        if shown and self.shown is not None:
            ok = self._attempt("click attribution", lambda: self.shown.remember(shown), 0)
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
