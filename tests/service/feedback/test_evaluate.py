"""`recserve evaluate`: replaying a log through the bundle that served it gives the served figures back; another
bundle gives its own; the served figures are those of the logged order."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from recserve.cli import main
from service.feedback import records
from service.feedback.evaluate import evaluate
from tests.service.bundles import build
from tests.service.feedback.logs import T0, write_files

REQUESTS = {  # per model: (route, request bodies); histories no longer than the bundles' max_history (5)
    "nrms": ("rank", [{"user_id": f"u{u}", "history": [f"N{u + j}" for j in range(1 + u % 5)],
                       "candidates": [f"N{(u * 7 + j) % 60 + 1}" for j in range(8)]} for u in range(1, 10)]
             + [{"user_id": "stranger", "candidates": ["N1", "N2", "N3", "N40"]}]),  # cold: the fallback order
    "bert4rec": ("recommend", [{"history": [f"i{u}", f"i{u + 3}", f"i{u + 9}"], "k": 6} for u in range(1, 10)]),
    "convncf": ("recommend", [{"user_id": f"u{u}", "k": 5} for u in range(1, 10)]),
}


def served_log(client, name: str) -> list[dict]:
    """What the service answered to REQUESTS[name], as impression records, and clicks on some shown items."""
    route, bodies = REQUESTS[name]
    out = []
    for n, body in enumerate(bodies):
        answer = client.post(f"/{route}", json={"model": name, **body}).json()
        shown = [r["item_id"] for r in answer["results"]]
        ts = T0 + 60 * n
        out.append(records.impression(f"q{n}", body.get("user_id"), name, name, answer["version"], route,
                                      answer.get("fallback"), body.get("history", []), len(body.get("history", [])),
                                      shown, [r["score"] for r in answer["results"]], ts=ts))
        if n % 4 != 3:  # every fourth impression gets no click: it is not replayed
            clicked = [shown[(n * 5) % len(shown)]] + ([shown[-1]] if n % 3 == 0 else [])
            out.append(records.event(body.get("user_id") or "someone", name, clicked, f"q{n}", ts=ts + 10))
    return sorted(out, key=lambda r: r["ts"])


@pytest.mark.parametrize("name", sorted(REQUESTS))
def test_the_served_bundle_replays_to_the_served_figures(client, bundles, name):
    report = evaluate(served_log(client, name), bundles[0] / name)
    route = REQUESTS[name][0]
    assert report["skipped"] == {} and report["served"] == [report["candidate"]]
    part = report[route]
    assert part["impressions"] == len(REQUESTS[name][1]) - len(REQUESTS[name][1]) // 4
    assert part["served"] == part["candidate"]
    assert not any(math.isnan(v) for v in part["served"].values())


def test_another_bundle_gets_its_own_figures_and_the_served_ones_stay(client, bundles, tmp_path):
    log = served_log(client, "nrms")
    other = build(tmp_path, "nrms", version="20260102T000000Z-00000002", seed=7)
    mine, theirs = evaluate(log, bundles[0] / "nrms"), evaluate(log, other.path)
    assert theirs["candidate"] == "20260102T000000Z-00000002"
    assert theirs["rank"]["served"] == mine["rank"]["served"]
    assert theirs["rank"]["candidate"] != mine["rank"]["candidate"]


def test_served_figures_are_those_of_the_logged_order(bundles):
    # Two answers the bundle never gave: the click at the top (MRR 1), then at the bottom of three (MRR 1/3).
    log = [records.impression("a", "u1", "nrms", "nrms", "v0", "rank", None, ["N1"], 1, ["N2", "N3", "N4"],
                              [0.9, 0.5, 0.1], ts=T0),
           records.event("u1", "nrms", ["N2"], "a", ts=T0 + 1),
           records.impression("b", "u1", "nrms", "nrms", "v0", "rank", None, ["N1"], 1, ["N5", "N6", "N7"],
                              [0.9, 0.5, 0.1], ts=T0 + 2),
           records.event("u1", "nrms", ["N7"], "b", ts=T0 + 3),
           records.event("u1", "nrms", ["N9"], "b", ts=T0 + 4)]  # an item not shown: no label
    served = evaluate(log, bundles[0] / "nrms")["rank"]["served"]
    assert served["mrr"] == pytest.approx((1 + 1 / 3) / 2)
    assert served["group_auc"] == pytest.approx(0.5)
    assert served["ndcg@5"] == pytest.approx((1 + 1 / np.log2(4)) / 2)


def test_shadow_impressions_and_other_models_are_not_replayed(client, bundles):
    log = served_log(client, "nrms")
    for r in log:
        if r["type"] == "impression" and r["request_id"] == "q0":
            r["shadow"] = True
    log += [{**r, "model": "nrms-b"} for r in served_log(client, "nrms") if r["type"] == "impression"]
    report = evaluate(sorted(log, key=lambda r: r["ts"]), bundles[0] / "nrms")
    assert report["rank"]["impressions"] == 10 - 2 - 1  # 10 answers, 2 without a click, q0 now a shadow arm


def test_the_command_prints_a_table_and_writes_json(client, bundles, tmp_path, capsys):
    write_files(tmp_path / "log", {1: served_log(client, "bert4rec")})
    assert main(["evaluate", "--bundle", str(bundles[0] / "bert4rec"), "--logs", str(tmp_path / "log"),
                 "--json", str(tmp_path / "report.json")]) == 0
    lines = capsys.readouterr().out.splitlines()
    report = json.loads((tmp_path / "report.json").read_text())
    assert lines[0] == "model bert4rec: served 20260101T000000Z-00000001; candidate 20260101T000000Z-00000001"
    assert lines[1].split() == ["route", "metric", "served", "candidate", "impressions"]
    hit = report["recommend"]["served"]["hit@k"]
    assert lines[2].split() == ["recommend", "hit@k", f"{hit:.4f}", f"{hit:.4f}", "7"]
    assert hit == 1.0  # every click was on a shown item


def test_a_folder_that_is_no_bundle_is_one_line(tmp_path, capsys):
    from tests.training.test_cli import one_error_line

    (tmp_path / "log").mkdir()
    assert main(["evaluate", "--bundle", str(tmp_path), "--logs", str(tmp_path / "log")]) == 2
    assert one_error_line(capsys) == (f"recserve: error: --bundle {tmp_path}: not a bundle folder (no manifest.json) "
                                      "nor a model folder (no LATEST)")
