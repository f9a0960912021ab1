"""The Grafana dashboard in deploy/grafana: it parses, and every metric its queries name is one a running app
exposes at /metrics (after traffic of each kind, so labelled series exist)."""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "recserve.json"
# a PromQL identifier followed by a selector, a range or the end of an argument: a metric, not a label or function
METRIC = re.compile(r"\b(recserve_[a-z_]+)\b(?=\s*[{\[)])")


def queried_metrics() -> set[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    assert exprs and all(target.get("refId") for panel in dashboard["panels"] for target in panel["targets"])
    return {name for expr in exprs for name in METRIC.findall(expr)}


def exposed(text: str) -> set[str]:
    return {sample.name for family in text_string_to_metric_families(text) for sample in family.samples}


def test_every_dashboard_query_names_a_metric_the_app_exposes(make_client, tmp_path):
    client = make_client(feedback_dir=tmp_path, feedback_flush_s=0.05)
    answer = client.post("/rank", json={"model": "nrms", "user_id": "u1", "candidates": ["N1", "N2"]}).json()
    client.post("/recommend", json={"model": "bert4rec", "user_id": "stranger", "k": 2})
    time.sleep(0.5)  # the answer is kept for attribution with the recorder's next batch
    client.post("/users/u1/events", json={"items": ["N1"], "request_id": answer["request_id"]})
    names = queried_metrics()
    assert {"recserve_attributed_clicks_total", "recserve_impressions_total", "recserve_request_seconds_bucket",
            "recserve_log_dropped_total"} <= names
    missing = names - exposed(client.get("/metrics").text)
    assert not missing, f"the dashboard queries metrics /metrics does not expose: {sorted(missing)}"
