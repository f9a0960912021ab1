"""Prometheus metrics, one registry per app (so several apps in one process, e.g. tests, never collide)."""
from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
POSITION_BUCKETS = (1, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 50, 100)
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
        # The feedback loop (service/feedback/online.py): what was shown and what got clicked, per version and arm.
        served = ["model", "version", "arm"]
        self.impressions = Counter(
            "recserve_impressions", "Answers of /rank and /recommend recorded; fallback: the cold-user ranking",
            [*served, "fallback"], registry=self.registry)
        self.items_shown = Counter("recserve_items_shown", "Items in the recorded answers", served,
                                   registry=self.registry)
        self.attributed_clicks = Counter(
            "recserve_attributed_clicks", "Clicked items whose request_id names a recorded answer", served,
            registry=self.registry)
        self.clicked_position = Histogram(
            "recserve_clicked_position", "Position (1 = first) of attributed clicks in their answer; +Inf: below "
            "the positions kept (RECSERVE_ATTRIBUTION_ITEMS) or not in it", served,
            buckets=POSITION_BUCKETS, registry=self.registry)
        self.events = Counter("recserve_events", "Items posted to /users/{id}/events, by event type and whether "
                              "their request_id named a recorded answer", ["event", "attributed"],
                              registry=self.registry)
        self.log_written = Counter("recserve_log_written", "Feedback-log records written to the sink",
                                   registry=self.registry)
        self.log_dropped = Counter("recserve_log_dropped", "Feedback-log records dropped: the buffer was full, "
                                   "the sink refused them, or one could not be encoded", ["reason"], registry=self.registry)
        # Shadow arms (service/experiments/shadow.py): work done after the answer, never in its way.
        shadow = ["experiment", "arm"]
        self.shadow_jobs = Counter("recserve_shadow_jobs", "Shadow-arm scorings of live requests, by outcome "
                                   "(scored, error)", [*shadow, "outcome"], registry=self.registry)
        self.shadow_dropped = Counter("recserve_shadow_dropped", "Shadow-arm jobs dropped because the shadow "
                                      "queue was full (RECSERVE_SHADOW_QUEUE)", shadow, registry=self.registry)
        self.shadow_seconds = Histogram("recserve_shadow_seconds", "Shadow-arm scoring time", shadow,
                                        buckets=LATENCY_BUCKETS, registry=self.registry)
        # Canary arms (service/experiments/canary.py)
        self.rollbacks = Counter("recserve_experiment_rollbacks", "Canary arms this process rolled back on a "
                                 "guardrail breach", shadow, registry=self.registry)
        self.rolled_back = Gauge("recserve_experiment_rolled_back", "1 while a canary arm is rolled back (its users answered by the control "
                                 "on every replica)", shadow, registry=self.registry)
        self._children: dict = {}
        # listed from the start, so a dashboard's query finds them
        for reason in ("buffer_full", "sink_error", "encode_error"):
            self.child(self.log_dropped, reason)

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
