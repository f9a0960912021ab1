"""Experiments served (issue #30): an experiment named as `model` answers with the user's arm, named in the
answer, the log and the metrics; pinned versions beside LATEST; reloads that refuse bad files; the readout."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import httpx
import pytest
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint

from service.experiments.readout import readout
from tests.service.bundles import build
from tests.service.feedback.test_recording import metric, wait_records
from tests.service.processes import free_port, wait_for

V1, V2 = "20260101T000000Z-00000001", "20260102T000000Z-00000002"
USERS = [f"u{i}" for i in range(1, 13)] + [f"new{i}" for i in range(60)]


def config(path, *arms, name="gru_ab", salt="salt-1"):
    """Write an experiments file of one experiment; arms: (name, model, version, weight, control)."""
    path.write_text(json.dumps({"experiments": [{"name": name, "salt": salt, "arms": [
        {"name": a, "model": m, "version": v, "weight": w, "control": c} for a, m, v, w, c in arms]}]}))
    return path


def rank(client, user="u1", **extra):
    return client.post("/rank", json={"model": "gru_ab", "user_id": user, "candidates": ["i1", "i2", "i3"],
                                      **extra})


@pytest.fixture()
def pinned(artifacts, tmp_path):
    """gru4recf at V2 (LATEST) and V1, an experiment of V1 (control) against LATEST."""
    build(artifacts, "gru4recf", version=V2, seed=3)
    return config(tmp_path / "experiments.json", ("old", "gru4recf", V1, 50, True),
                  ("new", "gru4recf", "LATEST", 50, False))


def test_an_arm_at_a_pinned_older_version_is_served_next_to_latest(make_client, artifacts, pinned, tmp_path):
    client = make_client(artifacts=artifacts, experiments=pinned, feedback_dir=tmp_path / "log")
    answers = {u: rank(client, u).json() for u in USERS}
    versions = {a["arm"]: a["version"] for a in answers.values()}
    assert versions == {"old": V1, "new": V2}
    assert all(a["model"] == "gru4recf" and a["experiment"] == "gru_ab" for a in answers.values())
    plain = client.post("/rank", json={"model": "gru4recf", "user_id": "u1", "candidates": ["i1"]}).json()
    assert plain["version"] == V2 and "arm" not in plain and "experiment" not in plain
    # the old arm answers with the old version's scores, not LATEST's
    old_user = next(u for u, a in answers.items() if a["arm"] == "old" and not a.get("fallback"))
    assert answers[old_user]["results"] != client.post("/rank", json={
        "model": "gru4recf", "user_id": old_user, "candidates": ["i1", "i2", "i3"]}).json()["results"]


def test_a_user_keeps_the_arm_across_requests_and_app_instances(make_client, artifacts, pinned, tmp_path):
    one = make_client(artifacts=artifacts, experiments=pinned, feedback_dir=tmp_path / "a")
    two = make_client(artifacts=artifacts, experiments=pinned, feedback_dir=tmp_path / "b")
    first = {u: rank(one, u).json()["arm"] for u in USERS}
    assert {u: rank(one, u).json()["arm"] for u in USERS} == first == {u: rank(two, u).json()["arm"] for u in USERS}
    assert set(first.values()) == {"old", "new"}
    # without a user (a history only) the request id decides, so a client's own id keeps the arm
    anonymous = [two.post("/recommend", json={"model": "gru_ab", "history": ["i1"], "k": 2},
                          headers={"X-Request-ID": f"req-{i}"}).json() for i in range(40)]
    again = [one.post("/recommend", json={"model": "gru_ab", "history": ["i1"], "k": 2},
                      headers={"X-Request-ID": f"req-{i}"}).json() for i in range(40)]
    assert [a["arm"] for a in anonymous] == [a["arm"] for a in again]
    assert {a["arm"] for a in anonymous} == {"old", "new"} and anonymous[0]["request_id"] == "req-0"


def test_the_log_and_the_metrics_name_the_arm(make_client, artifacts, pinned, tmp_path):
    client = make_client(artifacts=artifacts, experiments=pinned, feedback_dir=tmp_path / "log")
    answer = rank(client, "u1").json()
    (record,) = wait_records(tmp_path / "log", 1)
    label = f"gru_ab/{answer['arm']}"
    assert record["arm"] == label and record["request_id"] == answer["request_id"]
    assert record["version"] == answer["version"]
    labels = {"model": "gru4recf", "version": answer["version"], "arm": label}
    assert metric(client, "recserve_impressions_total", fallback="false", **labels) == 1
    client.post("/users/u1/events", json={"items": [answer["results"][0]["item_id"]],
                                          "request_id": answer["request_id"]})
    assert metric(client, "recserve_attributed_clicks_total", **labels) == 1


def test_weights_changed_by_reload_move_only_the_users_they_must(make_client, artifacts, tmp_path):
    path = config(tmp_path / "e.json", ("a", "gru4recf", "LATEST", 50, True), ("b", "bert4rec", "LATEST", 50, False))
    client = make_client(artifacts=artifacts, experiments=path, feedback_dir=tmp_path / "log")
    users = [f"x{i}" for i in range(400)]
    before = {u: rank(client, u).json()["arm"] for u in users}
    config(path, ("a", "gru4recf", "LATEST", 30, True), ("b", "bert4rec", "LATEST", 70, False))
    assert client.post("/admin/reload").status_code == 200
    after = {u: rank(client, u).json()["arm"] for u in users}
    moved = [(before[u], after[u]) for u in users if before[u] != after[u]]
    assert set(moved) == {("a", "b")} and 0.12 < len(moved) / len(users) < 0.28


def test_a_bad_configuration_is_refused_and_the_old_one_keeps_serving(make_client, artifacts, pinned, tmp_path):
    client = make_client(artifacts=artifacts, experiments=pinned, feedback_dir=tmp_path / "log")
    before = {u: rank(client, u).json()["arm"] for u in USERS}
    good = pinned.read_text()
    pinned.write_text(good.replace('"weight": 50, "control": false', '"weight": -1, "control": false'))
    r = client.post("/admin/reload")
    assert r.status_code == 409
    assert r.json()["experiments_refused"].startswith(f"{pinned}: experiments[0] (gru_ab).arms[1].weight: expected")
    assert {u: rank(client, u).json()["arm"] for u in USERS} == before
    # an arm whose bundle does not load: refused naming the arm and the bundle
    config(pinned, ("old", "gru4recf", "20200101T000000Z-deadbeef", 50, True), ("new", "gru4recf", "LATEST", 50, False))
    r = client.post("/admin/reload")
    refused = r.json()["experiments_refused"]
    assert r.status_code == 409 and "arm 'old': bundle " in refused and "20200101T000000Z-deadbeef" in refused
    assert "\n" not in refused and {u: rank(client, u).json()["arm"] for u in USERS} == before
    listed = client.get("/experiments").json()  # what serves, and why the file was refused
    assert listed["refused"] == refused and listed["file"] == str(pinned)
    assert listed["experiments"]["gru_ab"]["old"] == {"model": "gru4recf", "version": V1, "pinned": V1,
                                                      "weight": 50.0, "control": True}
    assert listed["experiments"]["gru_ab"]["new"]["version"] == V2
    pinned.write_text("experiments: [")  # not JSON
    assert "not valid JSON" in client.post("/admin/reload").json()["experiments_refused"]
    pinned.write_text(good)
    r = client.post("/admin/reload")
    assert r.status_code == 200 and r.json()["experiments_refused"] is None
    assert client.get("/experiments").json()["refused"] is None


def test_a_bad_file_at_start_serves_no_experiment_and_says_why(make_client, artifacts, tmp_path):
    path = config(tmp_path / "e.json", ("a", "gru4recf", "LATEST", 1, True), ("b", "nope", "LATEST", 1, False))
    client = make_client(artifacts=artifacts, experiments=path, feedback_dir=tmp_path / "log")
    assert rank(client).status_code == 404
    assert "arm 'b': model 'nope' is not served" in client.app.state.registry.experiments.error


def test_yaml_configuration(make_client, artifacts, tmp_path):
    path = tmp_path / "e.yaml"
    path.write_text("experiments:\n  - name: gru_ab\n    salt: s\n    arms:\n"
                    "      - {name: a, model: gru4recf, weight: 1, control: true}\n"
                    "      - {name: b, model: bert4rec, version: LATEST, weight: 0}\n")
    client = make_client(artifacts=artifacts, experiments=path, feedback_dir=tmp_path / "log")
    assert {rank(client, u).json()["arm"] for u in USERS} == {"a"}


def test_readout_counts_impressions_and_clicks_per_arm(make_client, artifacts, pinned, tmp_path):
    client = make_client(artifacts=artifacts, experiments=pinned, feedback_dir=tmp_path / "log",
                         feedback_flush_s=0.05)
    answers = [rank(client, u).json() for u in USERS]
    wait_records(tmp_path / "log", len(answers))  # kept for attribution with the recorder's batch
    clicked = [a for a in answers if a["results"]][:10]
    for a in clicked:
        client.post("/users/x/events", json={"items": [a["results"][0]["item_id"]], "request_id": a["request_id"]})
    client.app.state.ranker.feedback.counts.flush()
    body = client.get("/experiments/gru_ab").json()
    for arm in ("old", "new"):
        row = body["arms"][arm]
        assert row["impressions"] == sum(a["arm"] == arm for a in answers)
        assert row["clicks"] == sum(a["arm"] == arm for a in clicked)
    assert body["control"] == "old" and body["arms"]["old"]["version"] == V1 and body["arms"]["new"]["version"] == V2
    assert client.get("/experiments/nope").status_code == 404


def test_readout_is_shared_through_redis(make_client, artifacts, pinned, redis_prefix):
    settings = {"artifacts": artifacts, "experiments": pinned, "redis_url": "redis://127.0.0.1:6379/0",
                "cache_prefix": redis_prefix}
    one, two = make_client(**settings), make_client(**settings)
    arms = [rank(one, u).json()["arm"] for u in USERS[:20]] + [rank(two, u).json()["arm"] for u in USERS[20:]]
    for c in (one, two):
        c.app.state.ranker.feedback.counts.flush()
    body = one.get("/experiments/gru_ab").json()
    assert {a: body["arms"][a]["impressions"] for a in ("old", "new")} == {a: arms.count(a) for a in ("old", "new")}


def test_readout_figures_match_statsmodels():
    counts = {"A": {"impressions": 10_000, "clicks": 500}, "B": {"impressions": 9_000, "clicks": 540},
              "C": {"impressions": 0, "clicks": 0}}
    body = readout("e", "A", ["A", "B", "C"], counts)
    a, b = body["arms"]["A"], body["arms"]["B"]
    assert a["ctr"] == 0.05 and b["ctr"] == 0.06
    assert a["ctr_interval"] == pytest.approx(proportion_confint(500, 10_000, method="wilson"))
    assert b["lift"] == pytest.approx(0.2) and a["lift"] is None
    low, high = confint_proportions_2indep(540, 9_000, 500, 10_000, compare="ratio")
    assert b["lift_interval"] == pytest.approx([low - 1, high - 1])
    assert 0 < b["lift_interval"][0] < 0.2 < b["lift_interval"][1]  # hand check: B is better, the interval says so
    assert body["arms"]["C"]["ctr"] is None and body["arms"]["C"]["lift"] is None


def test_a_server_process_rereads_the_file_on_sighup(artifacts, tmp_path):
    path = config(tmp_path / "e.json", ("a", "gru4recf", "LATEST", 1, True), ("b", "bert4rec", "LATEST", 0, False))
    port = free_port()
    code = f"from service.server import serve; serve({str(artifacts)!r}, '127.0.0.1', {port}, 1)"
    env = {**os.environ, "RECSERVE_REDIS_URL": "", "RECSERVE_LOG_LEVEL": "warning", "RECSERVE_EXPERIMENTS": str(path),
           "RECSERVE_FEEDBACK_DIR": str(tmp_path / "log")}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/rank"

    def arms() -> set[str]:
        return {httpx.post(url, json={"model": "gru_ab", "user_id": u, "candidates": ["i1"]}).json()["arm"]
                for u in USERS}

    try:
        wait_for(lambda: httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200)
        assert arms() == {"a"}
        config(path, ("a", "gru4recf", "LATEST", 0, True), ("b", "bert4rec", "LATEST", 1, False))
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: arms() == {"b"})
    finally:
        proc.terminate()
        proc.wait(10)


def test_with_redis_a_pinned_version_ranks_items_added_while_serving(make_client, artifacts, tmp_path, redis_prefix):
    build(artifacts, "nrms", version=V2, seed=3)
    path = config(tmp_path / "e.json", ("old", "nrms", V1, 1, True), ("new", "nrms", "LATEST", 0, False),
                  name="news_ab")
    client = make_client(artifacts=artifacts, experiments=path, redis_url="redis://127.0.0.1:6379/0",
                         cache_prefix=redis_prefix, state_poll_s=0.05)
    added = client.post("/items", json={"model": "nrms", "items": [{"item_id": "N-new", "title": "w1 w2 w3"}]})
    assert added.status_code == 200 and added.json()["version"] == V2

    def old_arm_ranks_it() -> bool:
        body = client.post("/rank", json={"model": "news_ab", "user_id": "u1", "candidates": ["N-new", "N1"]}).json()
        return body["version"] == V1 and body["unknown"] == []

    wait_for(old_arm_ranks_it, timeout_s=10)


def test_the_arm_fields_are_what_orjson_writes_for_the_dict():
    import numpy as np
    import orjson

    from service.catalog import Catalog
    from service.experiments.active import Choice
    from service.responses import ranking_json

    catalog = Catalog.of(["a", 'b"'], np.zeros((2, 2), dtype=np.float32))
    scores = np.array([0.5, 0.25], dtype=np.float32)
    choice = Choice('ex"p', "arm-1", 'ex"p/arm-1', "r1")
    body = ranking_json("m", "v", catalog.heads, [2, 1], scores, ["z"], None, "r1", arm=choice)
    assert body == orjson.dumps({"model": "m", "version": "v", "request_id": "r1", "experiment": 'ex"p', "arm": "arm-1",
                                 "results": [{"item_id": 'b"', "score": 0.5, "rank": 1},
                                             {"item_id": "a", "score": 0.25, "rank": 2}], "unknown": ["z"]})
