"""What the service records of its traffic and counts online: each answer (an impression), each click (an
event, attributed to its answer by request id), each item added. The routes call `Feedback`; it builds the
records (service/feedback/records.py), updates the Prometheus counters and queues the records for the
recorder (service/feedback/recorder.py), so a request pays for a few dict and counter operations only.

Online metrics, per model, version and arm: recserve_impressions_total (with `fallback`),
recserve_items_shown_total, recserve_attributed_clicks_total and recserve_clicked_position; CTR per version
is `sum by (model, version) (rate(recserve_attributed_clicks_total[5m])) / sum by (model, version)
(rate(recserve_impressions_total[5m]))`. With RECSERVE_FEEDBACK_SAMPLE below 1 they count the sampled
answers (all of a sampled user's, none of the others': `Feedback.sampled`), so the ratio stays right.
"""
from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from service.cache import RedisStore, Store
from service.config import Settings, SettingsError
from service.experiments.assign import point
from service.experiments.counters import ArmCounts
from service.feedback import columns, records
from service.feedback.attribution import LocalShown, RedisShown
from service.feedback.recorder import Pending, Recorder
from service.feedback.sinks import FileSink, RedisStreamSink, Sink
from service.metrics import Metrics

log = logging.getLogger("recserve.feedback")
SAMPLE_SALT = "recserve.feedback.sample"  # which users RECSERVE_FEEDBACK_SAMPLE keeps: no experiment's arms
WRITER_TIMEOUT_S = 2.0  # the recorder's Redis timeout: its I/O thread, off the request path, may wait for Redis


class Feedback:
    def __init__(self, settings: Settings, metrics: Metrics, recorder: Recorder, logging_on: bool):
        self.metrics, self.recorder, self.logging_on = metrics, recorder, logging_on
        self.counts = recorder.counts
        self.sample = settings.feedback_sample
        self.salt = settings.feedback_user_salt.get_secret_value() if settings.feedback_user_salt else None
        self.positions = settings.attribution_items
        self._counters: dict[tuple, tuple] = {}  # (model, version, arm, fallback) -> its counters

    @classmethod
    def make(cls, settings: Settings, metrics: Metrics, store: Store) -> Feedback:
        """The sink and attribution store the settings name, and the recorder (started by `start`). `store`: the app's cache,
        whose Redis the click lookups share when the log has no Redis of its own."""
        url = settings.feedback_redis_url or settings.redis_url or None  # "" (an unset compose variable): none
        kind = settings.feedback_sink if settings.feedback_sink != "auto" else ("redis" if url else "files")
        if kind == "redis" and url is None:
            raise SettingsError("RECSERVE_FEEDBACK_SINK=redis needs RECSERVE_FEEDBACK_REDIS_URL or RECSERVE_REDIS_URL")
        retry_s = max(settings.redis_retry_s, 0.1)
        # the recorder's own client (its I/O thread): off the request path, it may wait longer for a busy Redis
        writer = RedisStore(url, WRITER_TIMEOUT_S, retry_s, lambda down: None) if url else None
        sink: Sink | None = None
        if kind == "redis":
            key = records.stream_key(settings.cache_prefix)
            sink, where = RedisStreamSink(writer, key, settings.feedback_max_entries,
                                          settings.feedback_retention_s), f"Redis stream {key}"
        elif kind == "files":
            folder = settings.feedback_dir or Path(settings.artifacts).absolute().parent / "feedback"
            try:
                sink, where = FileSink(folder, settings.feedback_file_bytes, settings.feedback_retention_s), \
                    f"files under {folder}"
            except OSError as exc:  # a read-only mount: serve all the same, say it once and loudly
                log.error("feedback log: cannot write under %s (%s); nothing is recorded (set "
                          "RECSERVE_FEEDBACK_DIR, or RECSERVE_FEEDBACK_SINK=off to silence this)", folder, exc)
                where = f"nowhere ({folder} cannot be written)"
        else:
            where = "nowhere (RECSERVE_FEEDBACK_SINK=off)"
        if url is None:
            shown, counts = LocalShown(settings.attribution_window_s), ArmCounts()
        else:
            reader = store if isinstance(store, RedisStore) and not settings.feedback_redis_url else \
                RedisStore(url, settings.redis_timeout_s, settings.redis_retry_s, lambda down: None)
            shown = RedisShown(writer, reader, settings.cache_prefix, settings.attribution_window_s)
            counts = ArmCounts(writer, reader, settings.cache_prefix, settings.attribution_window_s)
        log.info("feedback log: %s%s", where,
                 f", the answers of {settings.feedback_sample:.0%} of users" if settings.feedback_sample < 1 else "")
        recorder = Recorder(sink, shown, metrics, settings.feedback_buffer, settings.feedback_batch,
                            settings.feedback_flush_s, retry_s, counts)
        return cls(settings, metrics, recorder, sink is not None)

    def answered(self, model, route: str, request_id: str, user_id: str | None, window: Sequence[int],
                 history_len: int, rows: Sequence[int], scores: np.ndarray, fallback: str | None,
                 excluded: Sequence[int] = (), arm: str = records.DEFAULT_ARM) -> None:
        """An answer of catalog `rows` was sent: count it and queue it as it is (`Answer`, a tuple); its record
        and its summary for click attribution are made by the recorder, off the request. What a request pays here is what
        its recording costs the warm /rank path (docs/benchmarks.md, "The feedback log")."""
        if self.sample < 1.0 and not self.sampled(user_id):
            return
        key = (model.name, model.version, arm, fallback)
        counters = self._counters.get(key)
        if counters is None:
            counters = self._counters[key] = self._children(model.name, model.version, arm, fallback)
        counters[0].inc()
        counters[1].inc(len(rows))
        if arm != records.DEFAULT_ARM:  # an experiment's answer: its readout's counters
            self.counts.add(arm, "impressions")
        self.recorder.add(Answer(self, model, route, request_id, user_id, window, history_len, rows, scores,
                                 fallback, excluded, arm, time.time()))

    def answered_by(self, name: str, version: str, arm: str, fallback: str | None, shown: int,
                    answer: Pending, user_id: str | None) -> None:
        """An answer that makes its own record and summary (an interleaved one: service/experiments/
        interleaved.py), under the model `name` and `version` it names: counted as `answered` counts, queued."""
        if self.sample < 1.0 and not self.sampled(user_id):
            return
        key = (name, version, arm, fallback)
        counters = self._counters.get(key)
        if counters is None:
            counters = self._counters[key] = self._children(name, version, arm, fallback)
        counters[0].inc()
        counters[1].inc(shown)
        self.counts.add(arm, "impressions")
        self.recorder.add(answer)

    def sampled(self, user_id: str | None) -> bool:
        """Whether an answer to `user_id` is recorded and counted, when RECSERVE_FEEDBACK_SAMPLE is below 1: a
        fixed draw per user (its point in [0, 1), as experiments draw arms, under a salt of its own), so a
        sampled user's answers are all recorded, on every worker and replica and across restarts, and the
        others' none: whole sessions for the exports (a click of a user sampled per request would often lose
        its impression, and its label) and the readouts. A request without a user_id (a history alone) is
        drawn by itself."""
        if user_id is None:
            return random.random() < self.sample
        return point(SAMPLE_SALT, user_id) < self.sample  # a keyed BLAKE2b: ~1 us

    def _children(self, name: str, version: str, arm: str, fallback: str | None) -> tuple:
        """The impression and items-shown counters of (model version, arm, fallback or not), made once."""
        if len(self._counters) > 10_000:  # reloads, arms: a bound, never reached in practice
            self._counters.clear()
        m = self.metrics
        return (m.child(m.impressions, name, version, arm, "true" if fallback else "false"),
                m.child(m.items_shown, name, version, arm))

    def clicked(self, user_id: str, model: str | None, event: str, items: Sequence[str],
                request_id: str | None) -> None:
        """Events were posted: count those attributed to a recorded answer (by position), queue the record."""
        metrics = self.metrics
        summary = self.recorder.shown.find(request_id) if request_id is not None else None
        if summary is not None:
            labels = (summary.model, summary.version, summary.arm)
            positions = {item: rank for rank, item in enumerate(summary.items, 1)}
            metrics.child(metrics.attributed_clicks, *labels).inc(len(items))
            if summary.arm != records.DEFAULT_ARM:
                self.counts.add(summary.arm, "clicks", len(items))
            if summary.teams is not None:  # interleaved: each clicked item credits the arm that placed it
                credited = {item: summary.teams[positions[item] - 1] for item in items if item in positions}
                if credited:
                    self.counts.wins.clicked(summary.arm.split("/", 1)[0], request_id, credited)
            histogram = metrics.child(metrics.clicked_position, *labels)
            for item in items:
                histogram.observe(positions.get(item, float("inf")))
        metrics.child(metrics.events, event, "true" if summary is not None else "false").inc(len(items))
        if self.logging_on:
            self.recorder.add(records.event(records.hashed_user(user_id, self.salt), model, items, request_id,
                                            event))

    def added(self, model: str, items: Sequence[dict]) -> None:
        """Items were added or updated through /items: their raw inputs go to the log (for news.tsv exports)."""
        if self.logging_on:
            for item in items:
                self.recorder.add(records.added_item(model, item["item_id"], item["title"], item.get("category")))

    def start(self) -> None:
        """Begin writing, from the running event loop (the app's lifespan)."""
        self.recorder.start()

    async def close(self) -> None:
        await self.recorder.close()


class Answer(NamedTuple):
    """An answer as the request left it (rows, not ids; scores as computed): a tuple, the cheapest thing a
    request can queue. The recorder makes the log records and attribution summaries of many at once
    (`encode_many`)."""

    feedback: Feedback
    model: object  # the ServedModel (service/model.py) that answered
    route: str
    request_id: str
    user_id: str | None
    window: Sequence[int]
    history_len: int
    rows: Sequence[int]
    scores: np.ndarray
    fallback: str | None
    excluded: Sequence[int]
    arm: str
    ts: float

    @staticmethod
    def encode_many(answers: Sequence[Answer]) -> tuple[list[bytes], list[tuple[str, float, bytes]]]:
        """The log lines and attribution entries of many answers at once, in columns
        (service/feedback/columns.py): what the recorder calls instead of making a record per answer."""
        feedback = answers[0].feedback
        return columns.encode(answers, feedback.positions, feedback.salt, feedback.logging_on)
