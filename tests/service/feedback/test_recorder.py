"""The recorder's bounds: a sink that is slow or down never holds a request, and what waits is bounded."""
from __future__ import annotations

import threading
import time

from service.feedback.recorder import Recorder
from service.metrics import Metrics
from tests.service.processes import wait_for


class BlockedSink:
    """Takes nothing until released, then records what it is given."""

    def __init__(self):
        self.release, self.lines = threading.Event(), []

    def write(self, lines):
        self.release.wait()
        self.lines.extend(lines)

    def close(self):
        pass


class BrokenSink:
    def __init__(self):
        self.calls = 0

    def write(self, lines):
        self.calls += 1
        raise ConnectionError("down")

    def close(self):
        pass


def dropped(metrics: Metrics, reason: str) -> float:
    return metrics.registry.get_sample_value("recserve_log_dropped_total", {"reason": reason}) or 0.0


def test_a_full_buffer_drops_new_records_without_waiting():
    sink, metrics = BlockedSink(), Metrics()
    recorder = Recorder(sink, None, metrics, buffer=100, batch=10, flush_s=0.01, retry_s=0.1)
    recorder.add({"n": -1})
    wait_for(lambda: recorder.pending() == 0)  # the writer holds that one, blocked in the sink
    start = time.perf_counter()
    for n in range(1000):
        recorder.add({"n": n})
    assert time.perf_counter() - start < 0.5  # never waits on the sink
    assert recorder.pending() == 100 and dropped(metrics, "buffer_full") == 900
    sink.release.set()
    recorder.close()
    assert [line for line in sink.lines] == [b'{"n":%d}' % n for n in range(-1, 100)]


def test_a_failing_sink_drops_counted_batches_and_retries_at_its_pace():
    sink, metrics = BrokenSink(), Metrics()
    recorder = Recorder(sink, None, metrics, buffer=1000, batch=5, flush_s=0.01, retry_s=0.2)
    for n in range(12):
        recorder.add({"n": n})
    wait_for(lambda: dropped(metrics, "sink_error") >= 5)
    time.sleep(0.3)
    assert sink.calls <= 3  # one batch per retry interval, not a busy loop
    recorder.close(timeout_s=2)
    assert dropped(metrics, "sink_error") == 12


class Counted:
    """A pending answer that counts how often the writer made its record."""

    made = 0

    def record(self):
        Counted.made += 1
        return {"n": 1}

    def shown(self):
        return None


def test_while_the_sink_fails_a_batch_is_dropped_without_encoding_it():
    sink, metrics = BrokenSink(), Metrics()
    recorder = Recorder(sink, None, metrics, buffer=10_000, batch=1000, flush_s=0.01, retry_s=0.1)
    recorder.add({"n": 0})
    wait_for(lambda: dropped(metrics, "sink_error") == 1)  # the outage has begun
    Counted.made = 0
    for _ in range(1000):
        recorder.add(Counted())
    wait_for(lambda: dropped(metrics, "sink_error") == 1001)
    recorder.close(timeout_s=2)
    assert Counted.made == 10  # the probe alone
