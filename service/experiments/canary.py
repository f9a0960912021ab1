"""Canary arms: guardrails against the control arm over a sliding window, and the automatic rollback they
trigger, shared by every worker and replica through Redis.

A request answered by an arm of an experiment that has a canary adds its outcome (answered or failed) and
latency to an in-process tally (`record`: a dict update, no I/O). A task on each worker (`Canaries.run`) every
RECSERVE_CANARY_CHECK_S (1 s):
1. adds its tally to Redis: one hash per experiment and 10 s bucket, `<prefix>:{exp}:<experiment>:guard:<bucket>`,
   fields `<arm>:requests`, `<arm>:errors` and `<arm>:le<i>` (a latency histogram with fixed bounds, so every
   worker's p99 adds up), expiring after the longest window;
2. reads the window's buckets and judges each canary arm against the control (`breach`): its error share above
   the control's by more than `max_error_share`, its p99 over `max_p99_ratio` times the control's (both once each
   has `min_requests`), or, when `max_ctr_drop` is set, its CTR below the control's by more than that share
   (once each has `min_impressions`, from the experiment's counters);
3. on a breach writes the rollback (HSETNX `<prefix>:{exp}:<experiment>:rollback`, arm -> JSON reason and
   time): the first writer logs it and counts it (`recserve_experiment_rollbacks_total`);
4. reads the rollbacks and, where they changed, has the control answer each rolled-back arm's users
   (assignment itself is unchanged, so no other user moves, and they return to the canary when it is
   restored). So every worker and replica stops serving the arm within a check of the first to see the
   breach. `POST /admin/experiments/{name}/arms/{arm}/restore` deletes the marker; a new configuration (a
   reload) keeps it, since it names the same arm. Promotion is never automatic: raise the canary's weight or
   make it the control in the file, and reload.

Without Redis the process judges its own traffic and keeps its rollbacks (one process serves then).
"""
from __future__ import annotations

import asyncio
import bisect
import json
import logging
import threading
import time
from collections import defaultdict

from service.cache import RedisStore
from service.experiments.config import Guardrails

log = logging.getLogger("recserve.experiments")
BUCKET_S = 10
# latency bounds (seconds) of the histogram a p99 is read from: its bucket's upper bound
BOUNDS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, float("inf"))
# an arm's tally in a bucket, in this order; with Redis, the fields `<arm>:<field>` of the bucket's hash
FIELDS = ("requests", "errors", *(f"le{i}" for i in range(len(BOUNDS))))


def _row() -> list[int]:
    return [0] * len(FIELDS)


def p99(histogram: list[int]) -> float | None:
    """The upper bound of the bucket holding the 99th percentile; None without requests."""
    total = sum(histogram)
    if not total:
        return None
    rank, seen = 0.99 * total, 0
    for bound, n in zip(BOUNDS, histogram):
        seen += n
        if seen >= rank:
            return bound
    return BOUNDS[-1]


def breach(limits: Guardrails, canary: dict, control: dict) -> str | None:
    """Why `canary`'s window figures break its limits against `control`'s, or None. Each is {"requests",
    "errors", "histogram", "impressions", "clicks"}."""
    if canary["requests"] >= limits.min_requests and control["requests"] >= limits.min_requests:
        share, base = canary["errors"] / canary["requests"], control["errors"] / control["requests"]
        if share - base > limits.max_error_share:
            return (f"error share {share:.1%} against the control's {base:.1%} (limit +{limits.max_error_share:.1%}) "
                    f"over {canary['requests']} requests")
        slow, fast = p99(canary["histogram"]), p99(control["histogram"])
        if slow is not None and fast is not None and slow > limits.max_p99_ratio * fast:
            return f"p99 latency <= {slow * 1000:g} ms against the control's <= {fast * 1000:g} ms (limit x{limits.max_p99_ratio:g})"
    if limits.max_ctr_drop is not None and min(canary["impressions"], control["impressions"]) >= limits.min_impressions:
        ctr, base = canary["clicks"] / canary["impressions"], control["clicks"] / control["impressions"]
        if ctr < base * (1 - limits.max_ctr_drop):
            return f"CTR {ctr:.4f} against the control's {base:.4f} (limit -{limits.max_ctr_drop:.0%})"
    return None


class Canaries:
    def __init__(self, experiments, metrics, store: RedisStore | None, prefix: str, check_s: float,
                 counts=None):
        self.experiments, self.metrics, self.store, self.prefix = experiments, metrics, store, prefix
        self.check_s, self.counts = check_s, counts  # counts: the per-arm impressions and clicks (counters.py)
        self._tally: dict[tuple[str, str, int], list[int]] = {}  # (experiment, arm, bucket) -> counts
        self._local: dict[tuple[str, str, int], list[int]] = defaultdict(_row)  # without Redis: the window's tally
        self._lock = threading.Lock()
        self._task: asyncio.Task | None = None
        self.rolled_back: dict[str, dict[str, dict]] = {}  # experiment -> arm -> {"reason", "at"}: as served
        self._markers: dict[str, dict[str, dict]] = {}  # without Redis: the rollbacks written (Redis's hash)
        self.watched: frozenset[str] = frozenset()  # experiments with a canary arm (updated at each check)

    # --- the request path ---------------------------------------------------------------------------------

    def record(self, experiment: str, arm: str, seconds: float, failed: bool) -> None:
        """One answer of an arm of an experiment with a canary (`watched`: the routes ask), or its failure."""
        key = (experiment, arm, int(time.time() // BUCKET_S))
        with self._lock:
            row = self._tally.get(key)
            if row is None:
                row = self._tally[key] = _row()
            row[0] += 1
            row[1] += failed
            row[2 + bisect.bisect_left(BOUNDS, seconds)] += 1

    # --- the check, every check_s ---------------------------------------------------------------------------

    def key(self, experiment: str, suffix: str) -> str:
        return f"{self.prefix}:{{exp}}:{experiment}:{suffix}"

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self.run(), name="recserve-canaries")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - closing: nothing to report
                pass

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.check_s)
            try:
                await loop.run_in_executor(None, self.check)
            except Exception as exc:  # noqa: BLE001 - Redis down or a bug: serve on, try again next check
                log.debug("canary check failed: %s", exc)

    def check(self) -> None:
        """Flush the tally, judge every canary, write and read rollbacks. Blocking (Redis)."""
        with self._lock:
            tally, self._tally = self._tally, {}
        guarded = {name: served for name, served in self.experiments.served.items()
                   if any(a.canary for a in served.experiment.arms)}
        self.watched = frozenset(guarded)
        if self.store is None:
            oldest = int(time.time() // BUCKET_S) - 1000  # the in-process window's buckets: bounded
            self._local = defaultdict(_row, {k: v for k, v in self._local.items() if k[2] >= oldest})
            for key, row in tally.items():
                self._local[key] = [a + b for a, b in zip(self._local[key], row)]
        else:
            self._flush(tally, guarded)
        now = time.time()
        for name, served in guarded.items():
            window = self._window(name, served, now)
            control = served.experiment.control.name
            for arm in served.experiment.arms:
                if arm.canary and arm.name not in self.rolled_back.get(name, {}):
                    reason = breach(arm.canary, window[arm.name], window[control])
                    if reason is not None:
                        self._roll_back(name, arm.name, reason, now)
        self._apply(self._read_rollbacks(guarded))

    def _flush(self, tally: dict, guarded: dict) -> None:
        if not tally:
            return
        longest = max((a.canary.window_s for s in guarded.values() for a in s.experiment.arms if a.canary),
                      default=60.0)
        pipe = self.store.client.pipeline(transaction=False)
        for (name, arm, bucket), row in tally.items():
            key = self.key(name, f"guard:{bucket}")
            for field, n in zip(FIELDS, row):
                if n:
                    pipe.hincrby(key, f"{arm}:{field}", n)
            pipe.expireat(key, int((bucket + 1) * BUCKET_S + longest + BUCKET_S))
        try:
            pipe.execute()
        except Exception:
            with self._lock:  # kept for the next check: a handful of keys
                for key, row in tally.items():
                    mine = self._tally.setdefault(key, _row())
                    self._tally[key] = [a + b for a, b in zip(mine, row)]
            raise

    def _window(self, name: str, served, now: float) -> dict[str, dict]:
        """Per arm: requests, errors, the latency histogram over the longest canary window of `name`, and the
        experiment's impressions and clicks (its counters, since they began: CTR is judged on the totals)."""
        span = max(a.canary.window_s for a in served.experiment.arms if a.canary)
        last = int(now // BUCKET_S)
        buckets = range(last - int(span // BUCKET_S), last + 1)
        rows: dict[str, list[int]] = defaultdict(_row)
        if self.store is None:
            for (experiment, arm, bucket), row in self._local.items():
                if experiment == name and bucket in buckets:
                    rows[arm] = [a + b for a, b in zip(rows[arm], row)]
        else:
            pipe = self.store.client.pipeline(transaction=False)
            for bucket in buckets:
                pipe.hgetall(self.key(name, f"guard:{bucket}"))
            for found in pipe.execute():
                for field, n in found.items():
                    arm, _, what = field.decode().rpartition(":")
                    rows[arm][FIELDS.index(what)] += int(n)
        # CTR only where a limit asks for it: the counters are one more Redis read a check
        ctr = self.counts is not None and any(a.canary and a.canary.max_ctr_drop for a in served.experiment.arms)
        counts = self.counts.read(name) if ctr else {}
        return {a.name: {"requests": rows[a.name][0], "errors": rows[a.name][1], "histogram": rows[a.name][2:],
                         "impressions": counts.get(a.name, {}).get("impressions", 0),
                         "clicks": counts.get(a.name, {}).get("clicks", 0)} for a in served.experiment.arms}

    def _roll_back(self, name: str, arm: str, reason: str, now: float) -> None:
        entry = {"reason": reason, "at": now}
        first = True
        if self.store is not None:
            first = bool(self.store.client.hsetnx(self.key(name, "rollback"), arm, json.dumps(entry)))
        else:
            self._markers.setdefault(name, {})[arm] = entry
        if first:  # one replica's decision; the others only follow it
            log.warning("experiment %r: canary arm %r rolled back (its users answered by the control on every worker and replica): %s",
                        name, arm, reason)
            self.metrics.child(self.metrics.rollbacks, name, arm).inc()

    def _read_rollbacks(self, guarded: dict) -> dict[str, dict[str, dict]]:
        if self.store is None:
            return {name: dict(arms) for name, arms in self._markers.items() if arms}
        pipe = self.store.client.pipeline(transaction=False)
        names = list(guarded)
        for name in names:
            pipe.hgetall(self.key(name, "rollback"))
        return {name: {k.decode(): json.loads(v) for k, v in found.items()}
                for name, found in zip(names, pipe.execute()) if found}

    def _apply(self, found: dict[str, dict[str, dict]]) -> None:
        if found != self.rolled_back:
            self.rolled_back = found
            self.experiments.set_rollbacks({name: set(arms) for name, arms in found.items()})
        for name, served in self.experiments.served.items():
            for arm in served.experiment.arms:
                if arm.canary:
                    self.metrics.child(self.metrics.rolled_back, name, arm.name).set(
                        1 if arm.name in found.get(name, {}) else 0)

    def restore(self, name: str, arm: str) -> bool:
        """Serve a rolled-back arm again at its configured weight; False if it was not rolled back."""
        if self.store is not None:
            gone = bool(self.store.client.hdel(self.key(name, "rollback"), arm))
            if gone:  # and its window starts afresh: the breach that rolled it back must not roll it back again
                keys = list(self.store.client.scan_iter(match=self.key(name, "guard:*"), count=1000))
                if keys:
                    self.store.client.delete(*keys)
        else:
            gone = self._markers.get(name, {}).pop(arm, None) is not None
            self._local = defaultdict(_row, {k: v for k, v in self._local.items() if k[0] != name})
        if gone:
            log.warning("experiment %r: arm %r restored to its configured weight by an admin call", name, arm)
            found = {n: {a: e for a, e in arms.items() if not (n == name and a == arm)}
                     for n, arms in self.rolled_back.items()}
            self._apply({n: arms for n, arms in found.items() if arms})
        return gone
