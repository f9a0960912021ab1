"""Shadow arms: after an experiment's live answer is built, a sample of its requests is scored again by each
shadow arm, which answers nobody. The route only queues the request's inputs and the answer it sent
(`Shadows.offer`, a deque append); a task on the event loop scores the jobs one at a time, yielding to the
requests between jobs, with the same `Ranker` code the live route runs (`Ranker.ranked`, `recommended`):
same user resolution, caches, fallback and retrieval, stopping before the answer's JSON.

Nothing here can delay or fail a live answer: the queue is bounded (RECSERVE_SHADOW_QUEUE per process) and a
job that finds it full is dropped and counted (`recserve_shadow_dropped_total`, the arm's `shadow_dropped`),
never waited for; a shadow model that raises is counted (`recserve_shadow_jobs_total{outcome="error"}`, the
arm's `shadow_errors`) and logged once per arm. The cost that remains is CPU: a scored job runs on the loop
between requests (or, with RECSERVE_SHADOW_THREAD, a /rank job's scoring and its comparison with the live
answer run in a thread of their own, where onnxruntime releases the GIL); size `sample` for it
(bench/shadow_cost.py measures both).

Each scored job becomes a shadow impression in the log (`shadow: true`, the live request_id, the arm
"<experiment>/<arm>", `shadow_ms` and `live_ms`), never counted as the arm's impressions nor given clicks
online, and adds to the arm's counters (counters.py): jobs, errors, dropped, overlap@10 and Kendall tau sums
against the live answer, and latency histograms of the shadow scoring and the live ranking
(shadow_readout.py reads them back)."""
from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import numpy as np
import orjson

from service.experiments.active import Choice, Served
from service.experiments.shadow_readout import agreement, bucket, bucket_field
from service.feedback import records

log = logging.getLogger("recserve.experiments")


class Job(NamedTuple):
    """One live request to score again: what the route had at hand, nothing computed for it."""

    served: Served
    arm: int  # the shadow arm's index in `served`
    route: str  # "rank" or "recommend"
    request_id: str
    inputs: tuple  # the arguments of `Ranker.ranked` / `recommended` after the model
    live: bytes  # the live answer's JSON body
    live_s: float  # how long the live answer's ranking took


class Shadows:
    def __init__(self, registry, ranker, metrics, capacity: int, thread: bool = False):
        self.registry, self.ranker, self.metrics = registry, ranker, metrics
        self.feedback = ranker.feedback  # the log and the counters; None: nothing to record into, no shadows
        self.capacity, self.thread = capacity, thread
        self._queue: deque[Job] = deque()
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="recserve-shadow") if thread else None
        self._failed: set[str] = set()  # arms whose failure was logged
        self._scoring = False

    def start(self) -> None:
        """Begin scoring, from the running event loop (the app's lifespan)."""
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="recserve-shadow")

    def offer(self, choice: Choice, route: str, inputs: tuple, live: bytes, live_s: float) -> None:
        """A live answer of experiment `choice.experiment` was built: queue it for each shadow arm that samples
        it, or drop (and count) it when the queue is full. Never blocks; on the request path."""
        served = self.registry.experiments.get(choice.experiment)
        if served is None or not served.shadows or self.feedback is None or self._wake is None:
            return
        for i in served.shadows:
            sample = served.experiment.arms[i].sample
            if sample < 1.0 and random.random() >= sample:
                continue
            if len(self._queue) >= self.capacity:
                label = served.labels[i]
                self.metrics.child(self.metrics.shadow_dropped, *label.split("/", 1)).inc()
                self.feedback.counts.add(label, "shadow_dropped")
                continue
            self._queue.append(Job(served, i, route, choice.request_id, inputs, live, live_s))
            self._wake.set()

    def pending(self) -> int:
        return len(self._queue)

    def idle(self) -> bool:
        """Nothing queued and nothing being scored."""
        return not self._queue and not self._scoring

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                self._scoring = True
                try:
                    await self.score(self._queue.popleft())
                finally:
                    self._scoring = False
                await asyncio.sleep(0)  # the requests waiting go first

    async def score(self, job: Job) -> None:
        """Score one job with its shadow arm; record and count what came of it. Never raises."""
        model, label = job.served.models[job.arm], job.served.labels[job.arm]
        experiment, arm = label.split("/", 1)
        ranking, took = None, 0.0
        try:
            if job.route == "recommend":  # its index search is batched on the loop (service/index_searches.py)
                started = time.perf_counter()
                ranking = await self.ranker.recommended(model, *job.inputs)
                took = time.perf_counter() - started
            if self._pool is not None:
                ranking, took, items, overlap, tau = await asyncio.get_running_loop().run_in_executor(
                    self._pool, self._compare, job, model, ranking, took)
            else:
                ranking, took, items, overlap, tau = self._compare(job, model, ranking, took)
        except Exception as exc:  # the shadow's failure is the shadow's: counted, logged once, never raised
            self.metrics.child(self.metrics.shadow_jobs, experiment, arm, "error").inc()
            self.feedback.counts.add(label, "shadow_errors")
            if label not in self._failed:
                self._failed.add(label)
                log.error("shadow arm %s failed (%s: %s); counted in recserve_shadow_jobs_total{outcome=\"error\"}, "
                          "not logged again", label, type(exc).__name__, " ".join(str(exc).split()))
            return
        self.metrics.child(self.metrics.shadow_jobs, experiment, arm, "scored").inc()
        self.metrics.child(self.metrics.shadow_seconds, experiment, arm).observe(took)
        shadow_ms, live_ms = took * 1000, job.live_s * 1000
        add = self.feedback.counts.add
        add(label, "shadow_jobs")
        for field, value in (("overlap", overlap), ("tau", tau)):
            if value is not None:
                add(label, f"{field}_sum", float(value))
                add(label, f"{field}_n")
        for timed, ms in (("shadow", shadow_ms), ("live", live_ms)):
            add(label, f"{timed}_ms_sum", ms)
            add(label, bucket_field(timed, bucket(ms)))
        if self.feedback.logging_on:
            self.feedback.recorder.add(self._record(job, model, label, ranking, items, shadow_ms, live_ms))

    def _compare(self, job: Job, model, ranking, took: float) -> tuple:
        """(ranking, scoring seconds, its item ids, overlap@10, tau against the live answer); /rank's ranking is
        made (and timed) here. In the shadow's thread when there is one: scipy's tau alone costs ~0.15 ms a job."""
        if ranking is None:
            started = time.perf_counter()
            ranking = self.ranker.ranked(model, *job.inputs)
            took = time.perf_counter() - started
        if not np.isfinite(ranking.scores).all():
            raise RuntimeError(f"model {model.name!r} {model.version} produced non-finite scores")
        items = model.catalog.ids_of(ranking.rows)
        live = [r["item_id"] for r in orjson.loads(job.live)["results"]]
        return ranking, took, items, *agreement(live, items)

    def _record(self, job: Job, model, label: str, ranking, items: list[str], shadow_ms: float,
                live_ms: float) -> dict[str, Any]:
        """The shadow impression: as the live one would be (records.py), `shadow` true, with both latencies."""
        user, ids = ranking.user, model.catalog.ids_of
        record = records.impression(
            job.request_id, records.hashed_user(user.user_id, self.feedback.salt), model.name, model.bundle.kind,
            model.version, job.route, ranking.fallback, ids(user.window), len(user.seen), items, ranking.scores,
            label, shadow=True, excluded=ids(ranking.excluded) if job.route == "recommend" else [])
        record["shadow_ms"], record["live_ms"] = round(shadow_ms, 3), round(live_ms, 3)
        return record

    async def close(self) -> None:
        """Stop scoring: what is queued is dropped (shadow work is never owed to anyone)."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        if self._pool is not None:
            self._pool.shutdown(wait=False)
