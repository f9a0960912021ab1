"""Shadow arms (issue #30, service/experiments/shadow.py): they score sampled live requests after the answer,
never changing, delaying or failing it; their rankings are shadow impressions; work past the queue's bound is
dropped and counted; the readout compares them with the live answers; training exports and CTR leave them out."""
from __future__ import annotations

import asyncio
import json

import pytest

from recserve.cli import main
from service.experiments.config import ExperimentsError, parse
from service.experiments.shadow_readout import agreement
from tests.service.feedback.test_recording import logged, metric, wait_records
from tests.service.processes import wait_for

CANDIDATES = [f"i{i}" for i in range(1, 31)]  # more than overlap's 10: the overlap can tell rankings apart
USERS = [f"u{i}" for i in range(1, 13)]


def config(path, shadow: dict | None, name="gru_ab", live=("gru4recf", "gru4recf")):
    """An experiment of two live arms (a: control, b: weight 0) and, if given, a shadow arm `s`."""
    arms = [{"name": "a", "model": live[0], "weight": 1, "control": True},
            {"name": "b", "model": live[1], "weight": 0}]
    if shadow is not None:
        arms.append({"name": "s", "shadow": True, **shadow})
    path.write_text(json.dumps({"experiments": [{"name": name, "arms": arms}]}))
    return path


def rank(client, user, name="gru_ab", **extra):
    return client.post("/rank", json={"model": name, "user_id": user, "candidates": CANDIDATES},
                       headers={"X-Request-ID": f"req-{user}"}, **extra)


def shadows_of(folder) -> list[dict]:
    return [r for r in logged(folder) if r["type"] == "impression" and r["shadow"]]


def flushed(client) -> dict:
    client.app.state.ranker.feedback.counts.flush()
    return client.get("/experiments/gru_ab").json()


def wait_idle(client) -> None:
    wait_for(client.app.state.shadows.idle, timeout_s=10)


def test_a_shadow_arm_takes_no_weight_and_is_never_the_control():
    arms = [{"name": "a", "model": "m", "weight": 1, "control": True}]
    (exp,) = parse({"experiments": [{"name": "e", "arms": [*arms, {"name": "s", "model": "n", "shadow": True}]}]},
                   "f.yaml").values()
    shadow = exp.arms[1]
    assert shadow.shadow and shadow.weight == 0 and shadow.sample == 0.1 and not shadow.control
    for bad, field, says in [({"weight": 5}, "weight", "leave weight out or 0"), ({"control": True}, "control",
                             "cannot be the control"), ({"sample": 0}, "sample", "(0, 1]"),
                             ({"sample": 1.5}, "sample", "(0, 1]"), ({"shadow": "yes"}, "shadow", "true or false")]:
        arm = {"name": "s", "model": "n", "shadow": True, **bad}
        with pytest.raises(ExperimentsError) as err:
            parse({"experiments": [{"name": "e", "arms": [*arms, arm]}]}, "f.yaml")
        assert str(err.value).startswith(f"f.yaml: experiments[0] (e).arms[1].{field}: ") and says in str(err.value)
    with pytest.raises(ExperimentsError, match=r"arms\[1\]: unknown key 'sample'"):  # a live arm has no sample
        parse({"experiments": [{"name": "e", "arms": [*arms, {"name": "b", "model": "n", "weight": 1,
                                                              "sample": 0.5}]}]}, "f.yaml")
    with pytest.raises(ExperimentsError, match="exactly one arm must have `control: true`"):  # no live control
        parse({"experiments": [{"name": "e", "arms": [{"name": "s", "model": "n", "shadow": True},
                                                      {"name": "t", "model": "n", "shadow": True}]}]}, "f.yaml")


def test_the_agreement_of_two_rankings():
    assert agreement(list("abcdefghijkl"), list("abcdefghijkl")) == pytest.approx((1.0, 1.0))
    assert agreement(list("abc"), list("cba")) == pytest.approx((1.0, -1.0))
    overlap, tau = agreement(list("abcdefghijklmnopqrst"), list("klmnopqrstabcdefghij"))
    assert overlap == 0.0 and tau == pytest.approx(-0.0526, abs=1e-3)  # scipy's tau-b of that order
    assert agreement(["a"], ["b"]) == (0.0, None)  # no shared pair: no correlation


def test_the_live_answer_is_the_same_with_and_without_a_shadow_arm(make_client, tmp_path):
    without = make_client(experiments=config(tmp_path / "a.json", None), feedback_dir=tmp_path / "la")
    with_shadow = make_client(experiments=config(tmp_path / "b.json", {"model": "bert4rec", "sample": 1}),
                              feedback_dir=tmp_path / "lb")
    for user in [*USERS, "stranger"]:
        one, two = rank(without, user), rank(with_shadow, user)
        assert one.status_code == two.status_code == 200 and one.content == two.content
        body = {"model": "gru_ab", "user_id": user, "k": 5}
        assert without.post("/recommend", json=body, headers={"X-Request-ID": "r"}).content == \
            with_shadow.post("/recommend", json=body, headers={"X-Request-ID": "r"}).content
    wait_idle(with_shadow)
    assert flushed(with_shadow)["arms"]["s"]["shadow_readout"]["jobs"] == 2 * (len(USERS) + 1)


@pytest.mark.parametrize("thread", [False, True])
def test_shadow_impressions_are_logged_with_the_live_request_id(make_client, tmp_path, thread):
    folder = tmp_path / "log"
    client = make_client(experiments=config(tmp_path / "e.json", {"model": "bert4rec", "sample": 1}),
                         feedback_dir=folder, feedback_flush_s=0.05, shadow_thread=thread)
    answers = {u: rank(client, u).json() for u in USERS}
    recommended = client.post("/recommend", json={"model": "gru_ab", "history": ["i1", "i2"], "k": 4}).json()
    wait_records(folder, 2 * (len(USERS) + 1))
    live = {r["request_id"]: r for r in logged(folder) if r["type"] == "impression" and not r["shadow"]}
    shadow = {r["request_id"]: r for r in shadows_of(folder)}
    assert set(shadow) == set(live) == {a["request_id"] for a in answers.values()} | {recommended["request_id"]}
    record = shadow["req-u1"]
    assert (record["arm"], record["model"], record["kind"], record["route"]) == ("gru_ab/s", "bert4rec", "bert4rec",
                                                                                 "rank")
    assert sorted(record["items"]) == sorted(CANDIDATES) and record["user"] == "u1"
    assert record["shadow_ms"] > 0 and record["live_ms"] > 0 and "shadow_ms" not in live["req-u1"]
    # its ranking is bert4rec's own: what bert4rec answers when asked directly
    direct = client.post("/rank", json={"model": "bert4rec", "user_id": "u1", "candidates": CANDIDATES}).json()
    assert record["items"] == [r["item_id"] for r in direct["results"]]
    rec = shadow[recommended["request_id"]]
    assert rec["route"] == "recommend" and len(rec["items"]) == 4 and rec["excluded"] == ["i1", "i2"]
    labels = {"experiment": "gru_ab", "arm": "s"}
    assert metric(client, "recserve_shadow_jobs_total", outcome="scored", **labels) == len(USERS) + 1
    assert metric(client, "recserve_shadow_seconds_count", **labels) == len(USERS) + 1
    # the shadow is no impression of its arm or model online
    assert metric(client, "recserve_impressions_total", model="bert4rec", version=record["version"],
                  arm="gru_ab/s", fallback="false") == 0


def test_a_shadow_of_the_control_agrees_fully_and_a_sample_scores_a_share(make_client, tmp_path, capsys):
    folder = tmp_path / "log"
    path = config(tmp_path / "e.json", {"model": "gru4recf", "sample": 1})
    client = make_client(experiments=path, feedback_dir=folder, feedback_flush_s=0.05)
    for user in USERS:
        assert rank(client, user).status_code == 200
    wait_idle(client)
    readout = flushed(client)["arms"]["s"]
    assert readout["impressions"] == 0 and readout["shadow"] is True and readout["sample"] == 1
    shadow = readout["shadow_readout"]
    assert (shadow["jobs"], shadow["errors"], shadow["dropped"]) == (len(USERS), 0, 0)
    assert shadow["overlap"] == 1.0 and shadow["rank_correlation"] == pytest.approx(1.0)
    assert shadow["overlap_at"] == 10
    for timed in ("shadow", "live"):
        assert 0 < shadow["latency_ms"][timed]["mean"] and shadow["latency_ms"][timed]["p50"] <= \
            shadow["latency_ms"][timed]["p99"]
    wait_records(folder, 2 * len(USERS))
    assert main(["experiments", "report", "gru_ab", "--source", str(folder), "--config", str(path)]) == 0
    offline = json.loads(capsys.readouterr().out)["arms"]["s"]
    assert offline["impressions"] == 0 and offline["clicks"] == 0
    logged_readout = offline["shadow_readout"]
    assert (logged_readout["jobs"], logged_readout["unpaired"]) == (len(USERS), 0)
    assert logged_readout["overlap"] == 1.0 and logged_readout["rank_correlation"] == pytest.approx(1.0)
    assert logged_readout["latency_ms"]["shadow"]["p99"] >= logged_readout["latency_ms"]["shadow"]["p50"] > 0
    # a sample scores about its share of the requests (a random draw per request)
    config(path, {"model": "gru4recf", "sample": 0.25})
    assert client.post("/admin/reload").status_code == 200
    for i in range(400):
        rank(client, f"x{i}")
    wait_idle(client)
    assert 50 < flushed(client)["arms"]["s"]["shadow_readout"]["jobs"] - len(USERS) < 150


def test_a_failing_shadow_model_never_fails_the_live_answer(make_client, tmp_path, monkeypatch, caplog):
    folder = tmp_path / "log"
    client = make_client(experiments=config(tmp_path / "e.json", {"model": "bert4rec", "sample": 1}),
                         feedback_dir=folder, feedback_flush_s=0.05)

    def broken(*args, **kwargs):
        raise RuntimeError("the shadow's graph\nbroke")

    monkeypatch.setattr(client.app.state.registry.models["bert4rec"], "encode_user", broken)
    answers = [rank(client, u) for u in USERS]
    assert [a.status_code for a in answers] == [200] * len(USERS)
    wait_idle(client)
    assert metric(client, "recserve_shadow_jobs_total", experiment="gru_ab", arm="s", outcome="error") == len(USERS)
    shadow = flushed(client)["arms"]["s"]["shadow_readout"]
    assert (shadow["jobs"], shadow["errors"]) == (0, len(USERS))
    failures = [r.getMessage() for r in caplog.records if "shadow arm" in r.getMessage()]
    assert failures == ["shadow arm gru_ab/s failed (RuntimeError: the shadow's graph broke); counted in "
                        "recserve_shadow_jobs_total{outcome=\"error\"}, not logged again"]
    wait_records(folder, len(USERS))
    assert shadows_of(folder) == []


def test_shadow_work_past_the_bound_is_dropped_not_queued(make_client, tmp_path):
    client = make_client(experiments=config(tmp_path / "e.json", {"model": "bert4rec", "sample": 1}),
                         feedback_dir=tmp_path / "log", shadow_queue=3)
    shadows, taken = client.app.state.shadows, []

    async def blocked(job):  # the worker stuck on its first job: nothing more leaves the queue
        taken.append(job)
        await asyncio.Event().wait()

    shadows.score = blocked
    answers = [rank(client, u) for u in USERS]  # 12 live requests, each offering one job
    assert [a.status_code for a in answers] == [200] * len(USERS)
    assert shadows.pending() == 3 and len(taken) <= 1  # the bound, whatever the worker took before it stuck
    dropped = len(USERS) - 3 - len(taken)
    assert metric(client, "recserve_shadow_dropped_total", experiment="gru_ab", arm="s") == dropped
    assert flushed(client)["arms"]["s"]["shadow_readout"]["dropped"] == dropped
    assert rank(client, "u1").status_code == 200 and shadows.pending() == 3  # still answering, still bounded


def test_shadow_impressions_stay_out_of_training_exports_and_ctr(make_client, artifacts, tmp_path):
    folder = tmp_path / "log"
    path = config(tmp_path / "e.json", {"model": "nrms", "sample": 1}, name="news_ab", live=("nrms", "nrms"))
    client = make_client(artifacts=artifacts, experiments=path, feedback_dir=folder, feedback_flush_s=0.05)
    news = [f"N{i}" for i in range(1, 21)]
    answers = [client.post("/rank", json={"model": "news_ab", "user_id": u, "candidates": news}).json()
               for u in USERS]
    wait_records(folder, 2 * len(USERS))  # the answers are kept for attribution with the recorder's batch
    for user, answer in zip(USERS, answers[:4]):  # the shadow ranked the same items: the click names both
        client.post(f"/users/{user}/events", json={"items": [answer["results"][0]["item_id"]],
                                                   "request_id": answer["request_id"]})
    wait_records(folder, 2 * len(USERS) + 4)
    client.app.state.ranker.feedback.counts.flush()
    online = client.get("/experiments/news_ab").json()["arms"]
    assert (online["a"]["impressions"], online["a"]["clicks"]) == (len(USERS), 4)
    assert (online["s"]["impressions"], online["s"]["clicks"]) == (0, 0)
    assert main(["logs", "export", "--source", str(folder), "--out", str(tmp_path / "out")]) == 0
    behaviors = (tmp_path / "out" / "nrms" / "behaviors.tsv").read_text().splitlines()
    assert sorted(line.split("\t")[0] for line in behaviors) == sorted(a["request_id"] for a in answers[:4])
    assert main(["experiments", "report", "news_ab", "--source", str(folder), "--control", "a"]) == 0


def test_the_shadow_readout_is_summed_through_redis(make_client, tmp_path, redis_prefix):
    path = config(tmp_path / "e.json", {"model": "gru4recf", "sample": 1})
    settings = {"experiments": path, "redis_url": "redis://127.0.0.1:6379/0", "cache_prefix": redis_prefix}
    one, two = make_client(**settings), make_client(**settings)
    for client, users in ((one, USERS[:5]), (two, USERS[5:])):
        for user in users:
            rank(client, user)
        wait_idle(client)
        client.app.state.ranker.feedback.counts.flush()
    shadow = one.get("/experiments/gru_ab").json()["arms"]["s"]["shadow_readout"]
    assert shadow["jobs"] == len(USERS) and shadow["overlap"] == pytest.approx(1.0)  # a float sum, HINCRBYFLOAT
    assert shadow["rank_correlation"] == pytest.approx(1.0) and shadow["latency_ms"]["shadow"]["mean"] > 0
