"""The recorder's bounds: a sink that is slow or down never holds a request, and what waits is bounded."""
from __future__ import annotations

import asyncio
import threading
import time

from service.feedback.recorder import PROBE, Recorder
from service.metrics import Metrics


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


class Counted:
    """A pending answer that counts how often the recorder made its record."""

    made = 0

    def record(self):
        Counted.made += 1
        return {"n": 1}

    def shown(self):
        return None


def dropped(metrics: Metrics, reason: str) -> float:
    return metrics.registry.get_sample_value("recserve_log_dropped_total", {"reason": reason}) or 0.0


async def until(check, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def test_a_full_buffer_drops_new_records_without_waiting():
    sink, metrics = BlockedSink(), Metrics()

    async def run():
        recorder = Recorder(sink, None, metrics, buffer=100, batch=10, flush_s=0.01, retry_s=0.1)
        recorder.start()
        recorder.add({"n": -1})
        await until(lambda: recorder.pending() == 0)  # taken: its batch waits in the blocked sink
        start = time.perf_counter()
        for n in range(1000):
            recorder.add({"n": n})
        assert time.perf_counter() - start < 0.5  # never waits on the sink
        assert recorder.pending() == 100 and dropped(metrics, "buffer_full") == 900
        sink.release.set()
        await recorder.close()

    asyncio.run(run())
    assert sink.lines == [b'{"n":%d}' % n for n in range(-1, 100)]


def test_a_failing_sink_drops_counted_batches_and_retries_at_its_pace():
    sink, metrics = BrokenSink(), Metrics()

    async def run():
        recorder = Recorder(sink, None, metrics, buffer=1000, batch=5, flush_s=0.01, retry_s=0.2)
        recorder.start()
        for n in range(12):
            recorder.add({"n": n})
        await until(lambda: dropped(metrics, "sink_error") >= 5)
        await asyncio.sleep(0.3)
        assert sink.calls <= 3  # one batch per retry interval, not a busy loop
        await recorder.close(timeout_s=2)

    asyncio.run(run())
    assert dropped(metrics, "sink_error") == 12


def test_while_the_sink_fails_a_batch_is_dropped_without_encoding_it():
    sink, metrics = BrokenSink(), Metrics()

    async def run():
        recorder = Recorder(sink, None, metrics, buffer=10_000, batch=1000, flush_s=0.01, retry_s=0.1)
        recorder.start()
        recorder.add({"n": 0})
        await until(lambda: dropped(metrics, "sink_error") == 1)  # the outage has begun
        Counted.made = 0
        for _ in range(1000):
            recorder.add(Counted())
        await until(lambda: dropped(metrics, "sink_error") == 1001)
        await recorder.close(timeout_s=2)

    asyncio.run(run())
    assert Counted.made == PROBE


def test_requests_run_between_the_chunks_of_a_batch():
    """A batch is made in chunks, each followed by a yield to the event loop: a request arriving meanwhile
    waits for one chunk, not for the batch."""
    ticks, metrics = [], Metrics()

    class Slow(Counted):
        def record(self):
            time.sleep(0.0005)
            return {"n": 1}

    async def run():
        recorder = Recorder(BlockedSink(), None, metrics, buffer=10_000, batch=1000, flush_s=0.01, retry_s=0.1)
        recorder.sink.release.set()
        recorder.start()
        for _ in range(1000):  # ~0.5 s of work
            recorder.add(Slow())

        async def request_loop():
            while recorder.pending() or not recorder.sink.lines:
                ticks.append(time.perf_counter())
                await asyncio.sleep(0)

        await request_loop()
        await recorder.close()

    asyncio.run(run())
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    assert max(gaps) < 0.1  # a chunk (50 x 0.5 ms) at a time, never the whole half second


class ListSink(BlockedSink):
    def __init__(self):
        super().__init__()
        self.release.set()


class BrokenAttribution:
    def remember(self, entries):
        raise ConnectionError("attribution's Redis down")


class Answered(Counted):
    def shown(self):
        return ("r", 0.0, None)


class Broken(Counted):
    def record(self):
        raise ValueError("a bug")


def test_attribution_failing_loses_no_log_line():
    """The log goes to files while the attribution's Redis is down: every record is still written."""
    sink, metrics = ListSink(), Metrics()

    async def run():
        recorder = Recorder(sink, BrokenAttribution(), metrics, buffer=10_000, batch=100, flush_s=0.01,
                            retry_s=0.1)
        recorder.start()
        for _ in range(500):
            recorder.add(Answered())
        await until(lambda: len(sink.lines) == 500)
        await recorder.close()

    asyncio.run(run())
    assert dropped(metrics, "sink_error") == 0


def test_a_record_that_cannot_be_made_is_dropped_alone():
    sink, metrics = ListSink(), Metrics()

    async def run():
        recorder = Recorder(sink, None, metrics, buffer=100, batch=10, flush_s=0.01, retry_s=0.1)
        recorder.start()
        for n in range(20):
            recorder.add(Broken() if n % 5 == 0 else {"n": n})
        await until(lambda: len(sink.lines) == 16)
        await recorder.close()

    asyncio.run(run())
    assert dropped(metrics, "encode_error") == 4
    assert sink.lines == [b'{"n":%d}' % n for n in range(20) if n % 5]
