"""The loop closed through a running app: a session of requests and attributed clicks, recorded by the app's
own recorder, exported to the lines training reads, and replayed by `recserve evaluate` to the served figures."""
from __future__ import annotations

import json
from datetime import datetime, timezone

from recserve.cli import main
from service.feedback.evaluate import evaluate
from service.feedback.reader import Reader
from tests.service.bundles import MAX_HISTORY


def session(client) -> dict:
    """nrms: u1 and u2 rank candidates, u1 clicks the 2nd shown (attributed); u2 clicks without a request id.
    bert4rec: u3 asks /recommend and clicks the 1st shown (attributed), then an item without a request id."""
    rank = lambda user, items: client.post("/rank", json={"model": "nrms", "user_id": user, "candidates": items}).json()
    one, two = rank("u1", ["N1", "N2", "N3", "N4"]), rank("u2", ["N5", "N6"])
    client.post("/users/u1/events", json={"model": "nrms", "items": [one["results"][1]["item_id"]],
                                          "request_id": one["request_id"]})
    client.post("/users/u2/events", json={"model": "nrms", "items": ["N6"]})
    three = client.post("/recommend", json={"model": "bert4rec", "user_id": "u3", "k": 4}).json()
    client.post("/users/u3/events", json={"model": "bert4rec", "items": [three["results"][0]["item_id"]],
                                          "request_id": three["request_id"]})
    client.post("/users/u3/events", json={"model": "bert4rec", "items": ["i9"]})
    return {"one": one, "two": two, "three": three}


def test_a_served_session_exports_to_the_lines_training_reads(make_client, models, tmp_path, capsys):
    log, out = tmp_path / "log", tmp_path / "out"
    with make_client(feedback_dir=log) as client:  # leaving it stops the app: the recorder writes what it holds
        answers = session(client)
    one = answers["one"]
    stamp = {r["request_id"]: r["ts"] for r in Reader(str(log)).records() if r["type"] == "impression"}
    mind = lambda ts: datetime.fromtimestamp(ts, timezone.utc).strftime("%-m/%-d/%Y %-I:%M:%S %p")
    shown = [r["item_id"] for r in one["results"]]
    labels = " ".join(f"{item}-{int(n == 1)}" for n, item in enumerate(shown))
    history = " ".join(models["nrms"].histories["u1"][-MAX_HISTORY:])
    assert main(["logs", "export", "--source", str(log), "--out", str(out)]) == 0
    # u2's answer got no attributed click: not an impression MIND would keep
    assert (out / "nrms" / "behaviors.tsv").read_text().splitlines() == [
        f"{one['request_id']}\tu1\t{mind(stamp[one['request_id']])}\t{history}\t{labels}"]
    inter = (out / "bert4rec" / "bert4rec.inter").read_text().splitlines()
    assert inter[0] == "user_id:token\titem_id:token\ttimestamp:float"
    assert [line.split("\t")[:2] for line in inter[1:]] == [["u3", answers["three"]["results"][0]["item_id"]],
                                                            ["u3", "i9"]]


def test_evaluate_replays_the_served_log_to_the_served_figures(make_client, bundles, tmp_path):
    """/recommend by user id alone, for users whose stored history is longer than the window the model sees
    (and one with `exclude`): the replay leaves out what the answer left out, so it gets the same figures."""
    log = tmp_path / "log"
    with make_client(feedback_dir=log) as client:
        for n, user in enumerate(["u1", "u2", "u3", "u4", "u5", "u6"]):
            body = {"model": "gru4recf", "user_id": user, "k": 40, **({"exclude": ["i1", "i2"]} if n % 2 else {})}
            answer = client.post("/recommend", json=body).json()
            client.post(f"/users/{user}/events", json={"model": "gru4recf", "request_id": answer["request_id"],
                                                       "items": [answer["results"][-1 - n % 3]["item_id"]]})
    records = list(Reader(str(log)).records())
    assert any(r["type"] == "impression" and r["history_len"] > len(r["history"]) for r in records)
    report = evaluate(records, bundles[0] / "gru4recf")
    assert report["recommend"]["impressions"] == 6
    assert report["recommend"]["served"] == report["recommend"]["candidate"]
    assert json.dumps(report)  # the --json report is plain JSON
