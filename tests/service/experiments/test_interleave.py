"""Interleaved experiments (issue #30): team draft credits each item to its arm, both arms answer every request
through the Ranker, the log records each item's team, clicks decide each impression's winner online (Redis or
in process) and in the report, the sign test, and the report's PNG chart."""
from __future__ import annotations

import json
import random
import sys

import orjson
import pytest
from scipy.stats import binomtest

from recserve.cli import main
from service.experiments.config import ExperimentsError, parse
from service.experiments.readout import interleaving
from service.experiments.team_draft import seed, team_draft
from service.experiments.wins import TIE, Wins, changes, outcome
from service.feedback import records
from tests.service.conftest import REDIS_URL
from tests.service.experiments.test_report import write_log
from tests.service.feedback.test_recording import wait_records

ITEMS = [f"i{i}" for i in range(1, 61)]
CANDIDATES = ITEMS[:20]


def draft(a, b, n=None, request_id="r1"):
    return team_draft(a, b, n, random.Random(seed("salt", request_id)))


# --- team draft -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", range(40))
def test_team_draft_places_each_item_once_in_its_teams_order_with_balanced_teams(case):
    rng = random.Random(case)
    a = rng.sample(ITEMS[:30], 30)
    b = rng.sample(ITEMS[:30], 30)
    items, teams = draft(a, b, request_id=f"r{case}")
    assert sorted(items) == sorted(a) and len(set(items)) == len(items)  # every item once
    for team, ranking in ((0, a), (1, b)):
        picked = [i for i, t in zip(items, teams) if t == team]
        assert picked == sorted(picked, key=ranking.index)  # a team's items keep its own ranking's order
    for end in range(1, len(items) + 1):  # on every prefix the teams' sizes differ by at most one
        assert abs(teams[:end].count(0) - teams[:end].count(1)) <= 1
    # each team picks its highest ranked item not yet shown
    for i, (item, team) in enumerate(zip(items, teams)):
        ranking = a if team == 0 else b
        assert item == next(x for x in ranking if x not in items[:i])


def test_team_draft_is_deterministic_for_a_request_id_and_varies_across_ids():
    a, b = ITEMS[:10], ITEMS[:10][::-1]
    assert draft(a, b, request_id="x") == draft(a, b, request_id="x")
    outcomes = {tuple(draft(a, b, request_id=f"id-{i}")[1]) for i in range(50)}
    assert len(outcomes) > 1  # the coin flips follow the request id
    firsts = [draft(a, b, request_id=f"id-{i}")[1][0] for i in range(400)]
    assert 0.4 < sum(firsts) / len(firsts) < 0.6  # either team picks first about half the time


def test_team_draft_of_one_ranking_is_that_ranking():
    ranking = random.Random(3).sample(ITEMS, 25)
    for i in range(20):
        assert draft(ranking, ranking, request_id=f"r{i}")[0] == ranking
        assert draft(ranking, ranking, 7, request_id=f"r{i}")[0] == ranking[:7]


def test_team_draft_of_different_sets_keeps_the_length_and_lets_the_longer_ranking_fill():
    items, teams = draft(["a", "b"], ["c", "d", "e", "f"], request_id="q")
    assert sorted(items) == ["a", "b", "c", "d", "e", "f"] and teams[-2:] == [1, 1]
    items, _ = draft(["a", "b", "c"], ["a", "b", "c"][::-1], 2)
    assert len(items) == 2


# --- configuration ----------------------------------------------------------------------------------------------

def experiment(arms, **extra):
    return {"experiments": [{"name": "e", "arms": [{"name": n, "model": "m", "weight": 1, "control": i == 0}
                                                   for i, n in enumerate(arms)], **extra}]}


def test_configuration_of_an_interleaved_experiment():
    assert parse(experiment(["a", "b"], interleave=True), "f")["e"].interleave is True
    assert parse(experiment(["a", "b"]), "f")["e"].interleave is False
    with pytest.raises(ExperimentsError, match=r"^f: experiments\[0\] \(e\)\.arms: an interleaved experiment has "
                                               r"exactly two arms, got 3$"):
        parse(experiment(["a", "b", "c"], interleave=True), "f")
    with pytest.raises(ExperimentsError, match=r"\(e\)\.interleave: expected true or false, got 'yes'$"):
        parse(experiment(["a", "b"], interleave="yes"), "f")
    with pytest.raises(ExperimentsError, match="'interleaved' names the interleaved answers"):
        parse(experiment(["a", "interleaved"], interleave=True), "f")


# --- served -----------------------------------------------------------------------------------------------------

def config(path, first=("old", "gru4recf"), second=("new", "bert4rec")):
    path.write_text(json.dumps({"experiments": [{"name": "ilv", "salt": "s1", "interleave": True, "arms": [
        {"name": first[0], "model": first[1], "weight": 1, "control": True},
        {"name": second[0], "model": second[1], "weight": 1}]}]}))
    return path


def plain(client, model, user, route="/rank", **body):
    return client.post(route, json={"model": model, "user_id": user, **body}).json()


def test_an_interleaved_rank_credits_each_item_to_the_arm_that_placed_it(make_client, tmp_path):
    client = make_client(experiments=config(tmp_path / "e.json"), feedback_dir=tmp_path / "log")
    candidates = [*CANDIDATES, "nope"]
    answer = client.post("/rank", json={"model": "ilv", "user_id": "u1", "candidates": candidates},
                         headers={"X-Request-ID": "req-1"}).json()
    assert answer["experiment"] == "ilv" and answer["arm"] == "interleaved" and answer["request_id"] == "req-1"
    assert answer["model"] == "gru4recf+bert4rec" and answer["unknown"] == ["nope"]
    shown = [r["item_id"] for r in answer["results"]]
    assert sorted(shown) == sorted(CANDIDATES) and [r["rank"] for r in answer["results"]] == list(range(1, 21))
    assert set(answer["teams"]) == {"old", "new"} and len(answer["teams"]) == len(shown)
    for arm, model in (("old", "gru4recf"), ("new", "bert4rec")):
        own = plain(client, model, "u1", candidates=CANDIDATES)["results"]
        order, score = [r["item_id"] for r in own], {r["item_id"]: r["score"] for r in own}
        mine = [(r["item_id"], r["score"]) for r, t in zip(answer["results"], answer["teams"]) if t == arm]
        assert [i for i, _ in mine] == sorted((i for i, _ in mine), key=order.index)  # its own order
        assert all(s == score[i] for i, s in mine)  # each item's score is its own arm's
    for end in range(1, 21):
        assert abs(answer["teams"][:end].count("old") - answer["teams"][:end].count("new")) <= 1
    again = client.post("/rank", json={"model": "ilv", "user_id": "u1", "candidates": candidates},
                        headers={"X-Request-ID": "req-1"}).json()
    assert again == answer  # a replay of the request id is the same answer
    (record, _) = [r for r in wait_records(tmp_path / "log", 4) if r["arm"] == "ilv/interleaved"]
    assert record["arm"] == "ilv/interleaved" and record["teams"] == answer["teams"]
    assert record["items"] == shown and record["scores"] == [r["score"] for r in answer["results"]]
    assert record["model"] == "gru4recf+bert4rec" and record["kind"] == "gru4recf+bert4rec"


def test_interleaving_an_arm_with_itself_answers_as_the_model_does(make_client, tmp_path):
    path = config(tmp_path / "e.json", ("a", "gru4recf"), ("b", "gru4recf"))
    client = make_client(experiments=path, feedback_dir=tmp_path / "log")
    for user in ("u1", "u2", "u3"):
        answer = plain(client, "ilv", user, candidates=CANDIDATES)
        assert answer["results"] == plain(client, "gru4recf", user, candidates=CANDIDATES)["results"]
        assert answer["model"] == "gru4recf" and set(answer["teams"]) == {"a", "b"}
        recommended = plain(client, "ilv", user, "/recommend", k=6)
        assert recommended["results"] == plain(client, "gru4recf", user, "/recommend", k=6)["results"]


def test_an_interleaved_recommend_merges_the_arms_k_into_k(make_client, tmp_path):
    client = make_client(experiments=config(tmp_path / "e.json"), feedback_dir=tmp_path / "log")
    answer = plain(client, "ilv", "u2", "/recommend", k=8, exclude=["i1"])
    shown = [r["item_id"] for r in answer["results"]]
    assert len(shown) == len(set(shown)) == 8 and "i1" not in shown
    for arm, model in (("old", "gru4recf"), ("new", "bert4rec")):
        own = [r["item_id"] for r in plain(client, model, "u2", "/recommend", k=8, exclude=["i1"])["results"]]
        mine = [i for i, t in zip(shown, answer["teams"]) if t == arm]
        assert mine == [i for i in own if i in mine]  # its own top k, in its order
    (record,) = [r for r in wait_records(tmp_path / "log", 3) if r["arm"] == "ilv/interleaved"]
    assert record["route"] == "recommend" and record["teams"] == answer["teams"] and "i1" in record["excluded"]


def click_arm(client, arm, users, tie_on=None):
    """Per user an interleaved /rank, then clicks on the first two items `arm` placed (and, for the user
    `tie_on`, on the other arm's first two too: a tie). Returns the answers."""
    answers = [(u, plain(client, "ilv", u, candidates=CANDIDATES)) for u in users]
    wait_records(client.feedback_dir, len(answers))
    for u, a in answers:
        wanted = {arm} if u != tie_on else {"old", "new"}
        for want in wanted:
            items = [r["item_id"] for r, t in zip(a["results"], a["teams"]) if t == want][:2]
            for item in items:  # one event each, and the first posted twice: it counts once
                client.post(f"/users/{u}/events", json={"items": [item], "request_id": a["request_id"]})
            client.post(f"/users/{u}/events", json={"items": items[:1], "request_id": a["request_id"]})
    return answers


@pytest.mark.parametrize("shared", [False, True], ids=["in-process", "redis"])
def test_clicks_on_one_arms_items_make_wins_online_and_in_the_report(make_client, tmp_path, redis_prefix, shared,
                                                                     capsys):
    settings = {"experiments": config(tmp_path / "e.json"), "feedback_dir": tmp_path / "log",
                "feedback_flush_s": 0.05}
    if shared:
        settings |= {"redis_url": REDIS_URL, "cache_prefix": redis_prefix, "feedback_sink": "files"}
    client = make_client(**settings)
    client.feedback_dir = tmp_path / "log"
    users = [f"u{i}" for i in range(1, 11)]
    click_arm(client, "new", users, tie_on="u10")
    wait_records(tmp_path / "log", 10 + 9 * 3 + 2 * 3)
    client.app.state.ranker.feedback.counts.flush()
    online = client.get("/experiments/ilv").json()["interleaving"]
    assert online["impressions"] == 10 and online["arm"] == "new"
    assert (online["wins"], online["losses"], online["ties"]) == (9, 0, 1)
    assert online["arms"] == {"old": {"clicks": 2, "wins": 0}, "new": {"clicks": 20, "wins": 9}}
    assert online["p_value"] == pytest.approx(binomtest(9, 9).pvalue) and online["win_share"] == 1.0
    assert main(["experiments", "report", "ilv", "--source", str(tmp_path / "log"), "--control", "old"]) == 0
    offline = json.loads(capsys.readouterr().out)["interleaving"]
    assert offline == online


def test_a_later_click_turns_a_win_into_a_tie_across_two_processes(redis_prefix):
    class Store:
        client = __import__("redis").Redis.from_url(REDIS_URL, socket_timeout=1)

    one, two = Wins(Store(), Store(), redis_prefix, 60), Wins(Store(), Store(), redis_prefix, 60)
    one.clicked("e", "r1", {"x": "A"})
    one.clicked("e", "r2", {"y": "B"})
    one.flush()
    assert one.read("e") == {"wins": {"A": 1, "B": 1}, "ties": 0, "clicks": {"A": 1, "B": 1}}
    two.clicked("e", "r1", {"z": "B"})  # another replica: r1 is now 1-1
    two.clicked("e", "r2", {"y": "B"})  # the same item again: nothing changes
    two.flush()
    assert one.read("e") == {"wins": {"A": 0, "B": 1}, "ties": 1, "clicks": {"A": 1, "B": 2}}
    assert Store.client.ttl(one.impression_key("e", "r1")) > 0  # kept for the attribution window only


def test_outcomes_and_their_changes():
    assert outcome({}) is None and outcome({"A": 0}) is None
    assert outcome({"A": 2, "B": 1}) == "A" and outcome({"B": 1}) == "B" and outcome({"A": 1, "B": 1}) == TIE
    assert changes({}, {"x": "A"}) == {"clicks:A": 1, "wins:A": 1}
    assert changes({"x": "A"}, {"x": "A", "y": "B"}) == {"clicks:B": 1, "wins:A": -1, "ties": 1}
    assert changes({"x": "A"}, {"x": "A"}) == {}


def test_the_sign_test_of_a_hand_computed_case():
    # 9 wins, 1 loss: P(X >= 9 or X <= 1) for X ~ Binomial(10, 1/2) = 2 * (1 + 10) / 1024
    row = interleaving("A", ["A", "B"], 20, {"wins": {"B": 9, "A": 1}, "ties": 4, "clicks": {"A": 1, "B": 12}})
    assert row["p_value"] == pytest.approx(22 / 1024) == binomtest(9, 10, 0.5).pvalue
    assert (row["arm"], row["wins"], row["losses"], row["ties"], row["win_share"]) == ("B", 9, 1, 4, 0.9)
    low, high = binomtest(9, 10).proportion_ci(0.95, method="exact")
    assert row["win_share_interval"] == [pytest.approx(low), pytest.approx(high)]
    assert 0.5 < low < 0.9 < high  # p < 0.05: the interval leaves out 1/2
    none = interleaving("A", ["A", "B"], 3, {"wins": {}, "ties": 3, "clicks": {}})
    assert none["p_value"] is None and none["win_share"] is None


# --- the report and its chart -----------------------------------------------------------------------------------

def interleaved(request_id, items, teams):
    return records.impression(request_id, "u", "m", "gru4recf", "v", "rank", None, [], 0, items,
                              [1.0] * len(items), "exp/interleaved", teams=teams)


def hand_made_log(folder):
    rows = [interleaved(f"w{i}", ["a", "b", "c"], ["A", "B", "A"]) for i in range(6)]
    rows += [records.event("u", None, ["b"], f"w{i}") for i in range(5)]  # B wins 5
    rows += [records.event("u", None, ["a", "c"], "w5")]  # A wins 1 (two of its items)
    rows += [interleaved("t1", ["a", "b"], ["B", "A"]), records.event("u", None, ["a", "b"], "t1")]  # a tie
    rows += [interleaved("n1", ["a", "b"], ["A", "B"])]  # no click: no outcome
    old = records.impression("o1", "u", "m", "gru4recf", "v", "rank", None, [], 0, ["a"], [1.0], "exp/A")
    rows += [old, records.event("u", None, ["a"], "o1")]  # an A/B impression, from before, without teams
    write_log(folder, rows)


def test_the_report_of_a_hand_made_interleaved_log(tmp_path, capsys):
    hand_made_log(tmp_path / "log")
    assert main(["experiments", "report", "exp", "--source", str(tmp_path / "log"), "--control", "A"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["interleaving"] == json.loads(orjson.dumps(interleaving(
        "A", ["A", "B"], 8, {"wins": {"A": 1, "B": 5}, "ties": 1, "clicks": {"A": 3, "B": 6}})))
    assert body["arms"]["A"]["impressions"] == 1 and body["arms"]["B"]["impressions"] == 0


def test_the_report_writes_a_png_chart(tmp_path, capsys):
    image = pytest.importorskip("matplotlib.image")
    hand_made_log(tmp_path / "log")
    png = tmp_path / "chart.png"
    assert main(["experiments", "report", "exp", "--source", str(tmp_path / "log"), "--control", "A",
                 "--png", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = image.imread(png)
    assert pixels.shape[0] > 100 and pixels.shape[1] > 2 * pixels.shape[0]  # two panels side by side
    assert pixels.std() > 0  # something drawn


def test_without_matplotlib_the_chart_is_one_clear_line(tmp_path, capsys, monkeypatch):
    hand_made_log(tmp_path / "log")
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    assert main(["experiments", "report", "exp", "--source", str(tmp_path / "log"), "--control", "A",
                 "--png", str(tmp_path / "c.png")]) == 2
    err = capsys.readouterr().err
    assert err == "recserve: error: --png: matplotlib is not installed (pip install 'recserve[charts]')\n"
