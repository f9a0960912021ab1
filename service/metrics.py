"""Prometheus metrics, one registry per app (so several apps in one process, e.g. tests, never collide)."""
from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
INFERENCE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.0)


class Metrics:
    """The service's instruments; `render()` is the /metrics body."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.request_seconds = Histogram(
            "recserve_request_seconds", "HTTP request latency", ["route", "model", "status"],
            buckets=LATENCY_BUCKETS, registry=self.registry)
        self.cache_requests = Counter(
            "recserve_cache_requests", "Encoding cache lookups", ["kind", "result"], registry=self.registry)
        self.inference_seconds = Histogram(
            "recserve_inference_seconds", "onnxruntime run time", ["model", "graph"],
            buckets=INFERENCE_BUCKETS, registry=self.registry)
        self.cache_degraded = Gauge(
            "recserve_cache_degraded", "1 while Redis is configured but unreachable", registry=self.registry)
        self.models_loaded = Gauge("recserve_models_loaded", "Models being served", registry=self.registry)
        self.reloads = Counter("recserve_reloads", "Bundle loads by outcome", ["model", "outcome"],
                               registry=self.registry)
        self._children: dict = {}

    def child(self, metric, *labels: str):
        """`metric.labels(*labels)`, remembered: prometheus_client's lookup is a few us on every request."""
        key = (metric, labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def cache_lookup(self, kind: str, hits: int, misses: int) -> None:
        if hits:
            self.child(self.cache_requests, kind, "hit").inc(hits)
        if misses:
            self.child(self.cache_requests, kind, "miss").inc(misses)

    def inference_observer(self, model: str):
        """A callback for runtime.Graph: (graph name, seconds) -> histogram."""

        def observe(graph: str, seconds: float) -> None:
            self.child(self.inference_seconds, model, graph).observe(seconds)

        return observe

    def render(self) -> bytes:
        return generate_latest(self.registry)
