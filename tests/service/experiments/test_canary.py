"""Canary arms (issue #30): guardrails against the control over a sliding window, a breach rolling the canary
back on every instance through Redis, shown in /experiments, /models, /readyz and /metrics, and the admin call
that restores it."""
from __future__ import annotations

import functools
import json
import time

import pytest

from service.experiments.active import Served
from service.experiments.assign import bounds
from service.experiments.canary import BOUNDS, breach, p99
from service.experiments.config import ExperimentsError, Guardrails, parse
from service.ranking import Ranker
from tests.service.bundles import build
from tests.service.conftest import REDIS_URL

V1, V2 = "20260101T000000Z-00000001", "20260102T000000Z-00000002"
USERS = [f"new{i}" for i in range(80)]


def config(path, limits: dict, name: str = "gru_ab") -> object:
    path.write_text(json.dumps({"experiments": [{"name": name, "arms": [
        {"name": "old", "model": "gru4recf", "version": V1, "weight": 50, "control": True},
        {"name": "new", "model": "gru4recf", "version": "LATEST", "weight": 50, "canary": limits}]}]}))
    return path


def window(requests=0, errors=0, latency=0.001, impressions=0, clicks=0) -> dict:
    histogram = [0] * len(BOUNDS)
    histogram[BOUNDS.index(latency)] = requests
    return {"requests": requests, "errors": errors, "histogram": histogram, "impressions": impressions,
            "clicks": clicks}


def test_guardrails_judge_the_canary_against_the_control_once_both_have_enough():
    limits = Guardrails(min_requests=100, max_error_share=0.02, max_p99_ratio=2.0)
    assert breach(limits, window(99, 99), window(100)) is None  # too few canary requests to judge
    assert breach(limits, window(100, 2), window(100, 1)) is None  # +1 point: within the limit
    assert "error share 5.0%" in breach(limits, window(100, 5), window(100, 1))
    assert "p99" in breach(limits, window(100, latency=0.05), window(100, latency=0.02))
    assert breach(limits, window(100, latency=0.02), window(100, latency=0.01)) is None  # x2 exactly: allowed
    ctr = Guardrails(max_ctr_drop=0.2, min_impressions=1000)
    assert breach(ctr, window(impressions=1000, clicks=70), window(impressions=1000, clicks=100)) is not None
    assert breach(ctr, window(impressions=1000, clicks=85), window(impressions=1000, clicks=100)) is None
    assert breach(ctr, window(impressions=999, clicks=0), window(impressions=1000, clicks=100)) is None
    assert p99([0] * len(BOUNDS)) is None and p99([99, 1] + [0] * (len(BOUNDS) - 2)) == BOUNDS[0]


@pytest.mark.parametrize("limits, error", [
    ({"max_p99_ratio": 0.5}, "canary.max_p99_ratio: expected a value >= 1, got 0.5"),
    ({"min_requests": 1.5}, "canary.min_requests: expected a whole number, got 1.5"),
    ({"max_ctr_drop": 1}, "canary.max_ctr_drop: expected a value in (0, 1), got 1"),
    ({"windw_s": 60}, "canary: unknown key 'windw_s'"),
    ([], "canary: expected a mapping of limits"),
])
def test_a_bad_guardrail_refuses_the_file_naming_the_field(limits, error):
    data = {"experiments": [{"name": "e", "arms": [{"name": "a", "model": "m", "weight": 1, "control": True},
                                                   {"name": "b", "model": "m", "weight": 1, "canary": limits}]}]}
    with pytest.raises(ExperimentsError, match=None) as found:
        parse(data, "x.yaml")
    assert error in str(found.value) and "arms[1]" in str(found.value)
    control = {"experiments": [{"name": "e", "arms": [{"name": "a", "model": "m", "weight": 1, "control": True,
                                                       "canary": {}}, {"name": "b", "model": "m", "weight": 1}]}]}
    with pytest.raises(ExperimentsError, match="the control arm is what a canary is judged against"):
        parse(control, "x.yaml")
    assert parse({"experiments": [{"name": "e", "arms": [
        {"name": "a", "model": "m", "weight": 1, "control": True},
        {"name": "b", "model": "m", "weight": 1, "canary": {}}]}]}, "x")["e"].arms[1].canary == Guardrails()


@pytest.fixture()
def make_client(make_client):
    """Started apps that answer a failing request with its 500, as a server does (not re-raised)."""
    return functools.partial(make_client, raise_server_exceptions=False)


@pytest.fixture()
def failing_canary(monkeypatch):
    """The canary's version (V2, LATEST) fails every answer, as a broken release would; `slow` makes it slow."""
    ranked, mode = Ranker.ranked, {"fail": True, "slow": 0.0}

    def broken(self, model, *args, **kwargs):
        if model.version == V2:
            if mode["fail"]:
                raise RuntimeError("injected fault")
            time.sleep(mode["slow"])
        return ranked(self, model, *args, **kwargs)

    monkeypatch.setattr(Ranker, "ranked", broken)
    return mode


def wait(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def answers(client, users=USERS):
    return {u: client.post("/rank", json={"model": "gru_ab", "user_id": u, "candidates": ["i1", "i2", "i3"]})
            for u in users}


def test_a_breach_rolls_the_canary_back_on_every_instance_until_restored(make_client, artifacts, tmp_path,
                                                                          redis_prefix, failing_canary):
    build(artifacts, "gru4recf", version=V2, seed=3)
    path = config(tmp_path / "experiments.json", {"min_requests": 5, "window_s": 30, "max_error_share": 0.1})
    settings = dict(artifacts=artifacts, experiments=path, redis_url=REDIS_URL, cache_prefix=redis_prefix,
                    feedback_sink="files", canary_check_s=0.1)
    one = make_client(feedback_dir=tmp_path / "a", **settings)
    two = make_client(feedback_dir=tmp_path / "b", **settings)
    time.sleep(0.3)  # both have looked at the experiments once
    first = answers(one)
    failed = [u for u, r in first.items() if r.status_code == 500]
    assert failed and len(failed) < len(USERS)  # the canary's users fail, the control's are answered
    assert all(r.json()["arm"] == "old" for r in first.values() if r.status_code == 200)
    # instance one saw the breach; instance two follows within a check, without a request of its own failing
    wait(lambda: all(r.status_code == 200 for r in answers(two, failed).values()))
    moved = answers(two, failed)
    assert {r.json()["arm"] for r in moved.values()} == {"old"}
    ready = two.get("/readyz").json()
    assert ready["status"] == "ready" and "error share" in ready["rollbacks"]["gru_ab/new"]
    assert "error share" in next(m for m in two.get("/models").json() if m["name"] == "gru4recf")["rolled_back"][
        "gru_ab/new"]
    arms = two.get("/experiments/gru_ab").json()["arms"]
    assert arms["new"]["serving_weight"] == 0 and arms["new"]["canary"]["min_requests"] == 5
    metrics = [c.get("/metrics").text for c in (one, two)]
    # one decision however many saw the breach: whichever instance wrote the rollback first counted it
    counted = [m.count('recserve_experiment_rollbacks_total{arm="new",experiment="gru_ab"} 1.0') for m in metrics]
    assert sum(counted) == 1
    assert all('recserve_experiment_rolled_back{arm="new",experiment="gru_ab"} 1.0' in m for m in metrics)
    # restored by an admin call on one instance: both serve the canary again, which is fixed meanwhile
    failing_canary["fail"] = False
    restored = two.post("/admin/experiments/gru_ab/arms/new/restore")
    assert restored.status_code == 200 and restored.json()["restored"] is True
    wait(lambda: {r.json()["arm"] for r in answers(one, failed).values()} == {"new"})
    assert "rollbacks" not in two.get("/readyz").json()
    assert two.post("/admin/experiments/gru_ab/arms/old/restore").status_code == 404  # not a canary arm


def test_a_slow_canary_is_rolled_back(make_client, artifacts, tmp_path, redis_prefix, failing_canary):
    build(artifacts, "gru4recf", version=V2, seed=3)
    failing_canary.update(fail=False, slow=0.2)  # 200 ms an answer against the control's few
    path = config(tmp_path / "experiments.json", {"min_requests": 10, "window_s": 30, "max_p99_ratio": 3})
    client = make_client(artifacts=artifacts, experiments=path, redis_url=REDIS_URL, cache_prefix=redis_prefix,
                         feedback_sink="files", feedback_dir=tmp_path / "log", canary_check_s=0.1)
    time.sleep(0.3)
    answers(client, USERS[:40])
    wait(lambda: "p99 latency" in client.get("/readyz").json().get("rollbacks", {}).get("gru_ab/new", ""))
    assert {r.json()["arm"] for r in answers(client, USERS[:40]).values()} == {"old"}


def test_without_redis_the_process_rolls_back_its_own_canary(make_client, artifacts, tmp_path, failing_canary):
    build(artifacts, "gru4recf", version=V2, seed=3)
    path = config(tmp_path / "experiments.json", {"min_requests": 5, "window_s": 30})
    client = make_client(artifacts=artifacts, experiments=path, feedback_dir=tmp_path / "log", canary_check_s=0.1)
    time.sleep(0.3)
    assert any(r.status_code == 500 for r in answers(client).values())
    wait(lambda: all(r.status_code == 200 for r in answers(client).values()))
    assert "gru_ab/new" in client.get("/readyz").json()["rollbacks"]


def test_the_restore_call_is_an_admin_route(make_client, tmp_path, artifacts):
    build(artifacts, "gru4recf", version=V2, seed=3)
    settings = dict(address=("10.1.2.3", 40000), artifacts=artifacts, feedback_dir=tmp_path / "log",
                    experiments=config(tmp_path / "experiments.json", {}))
    remote = make_client(api_key="api-key", **settings)
    refused = remote.post("/admin/experiments/gru_ab/arms/new/restore", headers={"Authorization": "Bearer api-key"})
    assert refused.status_code == 403 and "loopback" in refused.json()["detail"]
    remote = make_client(admin_key="admin-key", **settings)
    assert remote.post("/admin/experiments/gru_ab/arms/new/restore").status_code == 401
    ok = remote.post("/admin/experiments/gru_ab/arms/new/restore", headers={"Authorization": "Bearer admin-key"})
    assert ok.status_code == 200 and ok.json()["restored"] is False


def test_a_rollback_moves_the_canarys_users_to_the_control_and_nobody_else():
    from service.experiments.active import Experiments

    experiment = parse({"experiments": [{"name": "e", "arms": [
        {"name": "a", "model": "m", "weight": 25, "control": True}, {"name": "b", "model": "m", "weight": 25,
                                                                     "canary": {}},
        {"name": "c", "model": "m", "weight": 25}, {"name": "d", "model": "m", "weight": 25}]}]}, "x")["e"]
    held = Experiments(None, None)
    models = ("A", "B", "C", "D")
    held.served = {"e": Served(experiment, models, bounds([25, 25, 25, 25]), tuple(f"e/{x}" for x in "abcd"))}
    users = [f"user{i}" for i in range(2000)]
    before = {u: held.get("e").answer(u, "r")[1].arm for u in users}
    held.set_rollbacks({"e": {"b"}})
    after = {u: held.get("e").answer(u, "r")[1].arm for u in users}
    moved = {u for u in users if before[u] != after[u]}
    assert moved == {u for u in users if before[u] == "b"} and moved
    assert {after[u] for u in moved} == {"a"}
    assert held.get("e").weight(1) == 0 and held.get("e").weight(0) == pytest.approx(0.5)
    held.set_rollbacks({})
    assert {u: held.get("e").answer(u, "r")[1].arm for u in users} == before
