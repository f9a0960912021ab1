"""Attribution: a click counts for the impression it names if it comes within the window, from its user, on an
item it showed; an impression is handed on (and forgotten) as soon as its window has passed."""
from __future__ import annotations

from service.feedback import records
from service.feedback.join import JoinCounts, join
from tests.service.feedback.logs import T0


def shown(request_id="r", user="u1", items=("a", "b", "c"), shadow=False, ts=T0) -> dict:
    return records.impression(request_id, user, "m", "nrms", "v", "rank", None, [], 0, list(items), [3, 2, 1],
                              shadow=shadow, ts=ts)


def click(items, request_id="r", user="u1", ts=T0 + 1, kind="click") -> dict:
    return records.event(user, "m", items, request_id, kind=kind, ts=ts)


def clicks_of(log: list[dict], window_s: float = 10) -> tuple[dict, JoinCounts]:
    counts = JoinCounts()
    out = {}
    for j in join(log, window_s, counts=counts):
        if j.type == "impression":
            out[(j.record["request_id"], j.record["shadow"])] = j.shown.clicked
    return out, counts


def test_a_click_at_the_windows_end_counts_and_one_after_it_does_not():
    got, counts = clicks_of([shown(), click(["b"], ts=T0 + 10), click(["c"], ts=T0 + 10.001)])
    assert got == {("r", False): ["b"]} and counts.attributed == 1 and counts.events == 2


def test_only_shown_items_of_the_same_user_are_attributed_each_once():
    log = [shown(), click(["x", "c", "a", "c"]), click(["a"], ts=T0 + 2), click(["b"], user="u2", ts=T0 + 3),
           click(["b"], request_id="other", ts=T0 + 4), click(["b"], kind="view", ts=T0 + 5)]
    got, counts = clicks_of(log)
    assert got == {("r", False): ["c", "a"]} and counts.attributed == 2


def test_an_impression_without_a_user_takes_any_users_click():
    got, _ = clicks_of([shown(user=None), click(["a"], user="visitor")])
    assert got == {("r", False): ["a"]}


def test_a_shadow_arm_gets_the_clicks_on_its_items_but_attributes_nothing_alone():
    log = [shown(), shown(items=("c", "d"), shadow=True), click(["d"]), click(["c"], ts=T0 + 2)]
    got, counts = clicks_of(log)
    assert got == {("r", False): ["c"], ("r", True): ["d", "c"]}
    assert counts.attributed == 1  # the click on d only the shadow arm "showed": no user saw it


def test_an_impression_is_handed_on_once_its_window_has_passed_not_at_the_end():
    log = iter([shown(ts=T0), shown("r2", ts=T0 + 5), click(["a"], request_id="r2", ts=T0 + 11),
                shown("r3", ts=T0 + 30)])
    out = join(log, 10)
    first = next(out)
    assert (first.type, first.record["request_id"]) == ("impression", "r")  # r's window closed at T0 + 11
    assert next(out).type == "event"
    assert next(out).record["request_id"] == "r2" and next(log, None) is None  # r2 leaves when r3 arrives
