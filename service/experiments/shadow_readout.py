"""How a shadow arm's rankings compare with the live answers of the same requests, and its readout.

Per job: overlap@k, the share of the first min(k, both lengths) items the two rankings have in common, and
Kendall's tau (scipy) between the two orders of the items both ranked (null with fewer than two). The readout
gives their means over the jobs, and the scoring latency of the shadow arm next to the live answer's:
GET /experiments/NAME from the counters (shadow.py adds them; latency quantiles are the upper bound of the
histogram bucket that holds them), `recserve experiments report NAME` from the log's shadow impressions
(each paired with the live impression of its request_id; exact quantiles of their `scoring_ms` and `live_ms`).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

K = 10  # overlap@K
BUCKETS_MS = (0.5, 1, 2, 5, 10, 20, 50, 100, 250, 500, 1000, math.inf)  # the counters' latency histogram
QUANTILES = (0.5, 0.99)
TIMED = ("shadow", "live")  # the latencies compared: the shadow arm's scoring, the live answer's ranking


def agreement(live: Sequence[str], shadow: Sequence[str], k: int = K) -> tuple[float | None, float | None]:
    """(overlap@k, Kendall's tau on the shared items) of two rankings of item ids, best first."""
    from scipy.stats import kendalltau

    n = min(k, len(live), len(shadow))
    overlap = len(set(live[:n]) & set(shadow[:n])) / n if n else None
    at = {item: i for i, item in enumerate(shadow)}
    shared = [(i, at[item]) for i, item in enumerate(live) if item in at]
    if len(shared) < 2:
        return overlap, None
    tau = float(kendalltau(*zip(*shared)).statistic)
    return overlap, None if math.isnan(tau) else tau


def bucket_field(timed: str, bound: float) -> str:
    """The counter of `timed` ("shadow" or "live") latencies up to `bound` ms (not cumulative)."""
    return f"{timed}_ms_le_{'inf' if math.isinf(bound) else f'{bound:g}'}"


def bucket(ms: float) -> float:
    return next(b for b in BUCKETS_MS if ms <= b)


def _mean(total: float, n: int) -> float | None:
    return total / n if n else None


def from_counts(counts: Mapping[str, float], sample: float | None = None) -> dict:
    """A shadow arm's readout from its counters (GET /experiments/NAME)."""
    jobs = int(counts.get("shadow_jobs", 0))
    latency = {}
    for timed in TIMED:
        hist = [int(counts.get(bucket_field(timed, b), 0)) for b in BUCKETS_MS]
        total, row = sum(hist), {"mean": _mean(counts.get(f"{timed}_ms_sum", 0.0), jobs)}
        for q in QUANTILES:
            rank = q * total
            row[f"p{q * 100:g}"] = next((b for b, c in zip(BUCKETS_MS, np.cumsum(hist)) if c >= rank), None) \
                if total else None
        latency[timed] = row
    return {"sample": sample, "jobs": jobs, "errors": int(counts.get("shadow_errors", 0)),
            "dropped": int(counts.get("shadow_dropped", 0)), "overlap_at": K,
            "overlap": _mean(counts.get("overlap_sum", 0.0), int(counts.get("overlap_n", 0))),
            "rank_correlation": _mean(counts.get("tau_sum", 0.0), int(counts.get("tau_n", 0))),
            "latency_ms": latency}


class FromLog:
    """A shadow arm's readout from the log: fed each shadow impression with its request's live one."""

    def __init__(self):
        self.overlaps: list[float] = []
        self.taus: list[float] = []
        self.ms: dict[str, list[float]] = {timed: [] for timed in TIMED}
        self.jobs = self.unpaired = 0

    def add(self, shadow: dict, live: dict | None) -> None:
        self.jobs += 1
        for timed in TIMED:
            ms = shadow.get(f"{timed}_ms")
            if ms is not None:
                self.ms[timed].append(ms)
        if live is None:  # the live answer was not recorded (RECSERVE_FEEDBACK_SAMPLE < 1, or dropped)
            self.unpaired += 1
            return
        overlap, tau = agreement(live.get("items") or [], shadow.get("items") or [])
        if overlap is not None:
            self.overlaps.append(overlap)
        if tau is not None:
            self.taus.append(tau)

    def readout(self) -> dict:
        latency = {}
        for timed, values in self.ms.items():
            row = {"mean": float(np.mean(values)) if values else None}
            for q in QUANTILES:
                row[f"p{q * 100:g}"] = float(np.quantile(values, q)) if values else None
            latency[timed] = row
        return {"jobs": self.jobs, "unpaired": self.unpaired, "overlap_at": K,
                "overlap": float(np.mean(self.overlaps)) if self.overlaps else None,
                "rank_correlation": float(np.mean(self.taus)) if self.taus else None, "latency_ms": latency}
