"""Per-arm impressions and attributed clicks of every experiment, for the readout (GET /experiments/NAME).

A request adds to an in-process dict (under a lock: ~0.2 us); the feedback recorder flushes it (in its I/O
thread) every RECSERVE_FEEDBACK_FLUSH_S, so the request path never waits for Redis. With Redis the totals live
in one hash per experiment, `<prefix>:{exp}:<experiment>`, fields `<arm>:impressions` and `<arm>:clicks` (HINCRBY), shared by
every worker and replica and kept across restarts; a flush Redis refuses is kept and retried with the next. A
shadow arm's fields (shadow.py) are counts too, and sums (floats, HINCRBYFLOAT).
Without Redis this process keeps the totals (one process serves then). An interleaved experiment's wins, losses
and ties are kept by `wins` (wins.py), flushed with these."""
from __future__ import annotations

import threading
from collections import defaultdict

from service.cache import RedisStore
from service.experiments.wins import Wins

FIELDS = ("impressions", "clicks")


class ArmCounts:
    def __init__(self, writer: RedisStore | None = None, reader: RedisStore | None = None, prefix: str = "",
                 window_s: float = 3600.0):
        self.writer, self.reader, self.prefix = writer, reader, prefix
        self.wins = Wins(writer, reader, prefix, window_s)  # interleaved experiments' outcomes
        self._pending: dict[tuple[str, str], int] = defaultdict(int)  # (label, field) -> count
        self._totals: dict[tuple[str, str], int] = defaultdict(int)  # without Redis: everything so far
        self._lock = threading.Lock()

    def key(self, experiment: str) -> str:
        return f"{self.prefix}:{{exp}}:{experiment}"

    def add(self, label: str, field: str, n: int | float = 1) -> None:
        """Count `n` for arm `label` ("<experiment>/<arm>"); called on the request path."""
        with self._lock:
            self._pending[(label, field)] += n

    def pending(self) -> bool:
        """Whether anything was counted since the last flush."""
        return bool(self._pending) or self.wins.pending()

    def flush(self) -> None:
        """Move what was counted to Redis (or the process's totals); raises when Redis refuses (kept)."""
        try:
            self._flush()
        finally:  # the outcomes too, whether or not the counts went
            if self.wins.pending():
                self.wins.flush()

    def _flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, defaultdict(int)
        if not pending:
            return
        if self.writer is None:
            with self._lock:
                for key, n in pending.items():
                    self._totals[key] += n
            return
        try:
            pipe = self.writer.client.pipeline(transaction=False)
            for (label, field), n in pending.items():
                experiment, arm = label.split("/", 1)
                if isinstance(n, float):  # a shadow arm's sums (shadow.py)
                    pipe.hincrbyfloat(self.key(experiment), f"{arm}:{field}", n)
                else:
                    pipe.hincrby(self.key(experiment), f"{arm}:{field}", n)
            pipe.execute()
        except Exception:
            with self._lock:  # kept for the next flush: a handful of keys, never a growing queue
                for key, n in pending.items():
                    self._pending[key] += n
            raise

    def read(self, experiment: str) -> dict[str, dict[str, int | float]]:
        """arm -> {"impressions", "clicks", and a shadow arm's fields} as flushed so far (Redis: every replica's)."""
        found: dict[str, dict[str, int]] = {}
        if self.reader is None:
            with self._lock:
                items = [(label.split("/", 1)[1], field, n) for (label, field), n in self._totals.items()
                         if label.split("/", 1)[0] == experiment]
        else:
            raw = self.reader.client.hgetall(self.key(experiment))
            items = [(*k.decode().rsplit(":", 1), _number(v)) for k, v in raw.items()]
        for arm, field, n in items:
            found.setdefault(arm, dict.fromkeys(FIELDS, 0))[field] = n
        return found


def _number(raw: bytes) -> int | float:
    """A counter as Redis keeps it: an integer (HINCRBY), or a float's digits (HINCRBYFLOAT: a shadow arm's sums)."""
    try:
        return int(raw)
    except ValueError:
        return float(raw)
