"""`recserve experiments report` (service/experiments/report.py): the readout of a hand-made log, and of the
log a served experiment writes, agreeing with GET /experiments/NAME."""
from __future__ import annotations

import json

import orjson
import pytest

from recserve.cli import main
from service.experiments.readout import readout
from service.feedback import records
from tests.service.experiments.test_serving import USERS, pinned, rank  # noqa: F401 - the fixture
from tests.service.feedback.test_recording import wait_records


def write_log(folder, rows):
    folder.mkdir(parents=True, exist_ok=True)
    lines = b"".join(records.encode(r) + b"\n" for r in rows)
    (folder / f"{records.FILE_PREFIX}20260101T000000-1-0001{records.FILE_SUFFIX}").write_bytes(lines + b'{"cut')


def impression(request_id, arm, shadow=False):
    return records.impression(request_id, "u", "m", "gru4recf", "v", "rank", None, [], 0, ["i1", "i2"], [1.0, 0.5],
                              arm, shadow)


def test_the_report_of_a_hand_made_log(tmp_path, capsys):
    rows = [impression(f"a{i}", "exp/A") for i in range(40)] + [impression(f"b{i}", "exp/B") for i in range(50)]
    rows += [impression("s1", "exp/B", shadow=True), impression("o1", "other/A"), impression("d1", "default")]
    rows += [records.event("u", None, ["i1"], f"a{i}") for i in range(4)]  # 4 clicks on A
    rows += [records.event("u", None, ["i1", "i2"], f"b{i}") for i in range(5)]  # 10 clicks on B
    rows += [records.event("u", None, ["i1"], "s1"), records.event("u", None, ["i1"], "o1"),
             records.event("u", None, ["i1"], None), records.event("u", None, ["i1"], "unknown-id")]
    write_log(tmp_path / "log", rows[::-1])  # clicks before their impressions: order does not matter
    assert main(["experiments", "report", "exp", "--source", str(tmp_path / "log"), "--control", "A"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["arms"]["B"].pop("shadow_readout")["jobs"] == 1  # s1: read out apart, never an impression
    want = readout("exp", "A", ["A", "B"], {"A": {"impressions": 40, "clicks": 4},
                                            "B": {"impressions": 50, "clicks": 10}})
    assert got == json.loads(orjson.dumps(want))
    assert got["arms"]["B"]["lift"] == pytest.approx(0.2 / 0.1 - 1)


def test_the_control_comes_from_the_experiments_file(tmp_path, capsys, pinned):  # noqa: F811
    write_log(tmp_path / "log", [impression("n1", "gru_ab/new")])
    assert main(["experiments", "report", "gru_ab", "--source", str(tmp_path / "log"), "--config", str(pinned)]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["control"] == "old" and list(got["arms"]) == ["old", "new"]
    assert main(["experiments", "report", "gru_ab", "--source", str(tmp_path / "log")]) == 2
    assert "--control: give the control arm" in capsys.readouterr().err


def test_the_report_agrees_with_the_online_readout(make_client, artifacts, pinned, tmp_path, capsys):  # noqa: F811
    client = make_client(artifacts=artifacts, experiments=pinned, feedback_dir=tmp_path / "log",
                         feedback_flush_s=0.05)
    answers = [(u, rank(client, u).json()) for u in USERS]
    wait_records(tmp_path / "log", len(answers))  # kept for attribution with the recorder's batch
    clicked = [(u, a) for u, a in answers if a["results"]][::3]
    for u, a in clicked:  # each by the user who was answered: the log attributes only those
        client.post(f"/users/{u}/events", json={"items": [a["results"][0]["item_id"]], "request_id": a["request_id"]})
    wait_records(tmp_path / "log", len(answers) + len(clicked))
    client.app.state.ranker.feedback.counts.flush()
    online = client.get("/experiments/gru_ab").json()
    main(["experiments", "report", "gru_ab", "--source", str(tmp_path / "log"), "--control", "old"])
    offline = json.loads(capsys.readouterr().out)
    for arm in ("old", "new"):
        want = {k: online["arms"][arm][k] for k in offline["arms"][arm]}
        assert offline["arms"][arm] == want
