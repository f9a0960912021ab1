"""Answers recorded in columns (service/feedback/columns.py): read back, each is the impression record it would be
alone, with its ids, history, exclusions and scores as answered; its attribution summary is `Summary`'s encoding;
a record whose columns disagree is an error naming file:line."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import orjson
import pytest

from service.catalog import Catalog
from service.feedback import columns, records
from service.feedback.attribution import Summary
from service.feedback.online import Answer
from service.feedback.reader import LogError, Reader

T0 = 1_733_390_000.0


def served(name: str, ids: list[str], kind: str = "gru4recf"):
    return SimpleNamespace(name=name, version=f"{name}-v1", bundle=SimpleNamespace(kind=kind),
                           catalog=Catalog.of(ids, np.zeros((len(ids), 4), dtype=np.float32)))


def answer(model, route, n, user, window, rows, scores, excluded=(), fallback=None, arm="default", salt=None):
    feedback = SimpleNamespace(positions=2, salt=salt, logging_on=True)
    return Answer(feedback, model, route, f"req-{n}", user, window, len(window) + 3, np.asarray(rows),
                  np.asarray(scores), fallback, np.asarray(excluded, dtype=np.int64), arm, T0 + n)


def alone(a: Answer, salt=None) -> dict:
    """The impression record of one answer, made the plain way: ids looked up one by one."""
    ids = a.model.catalog.ids_of
    return records.impression(
        a.request_id, records.hashed_user(a.user_id, salt), a.model.name, a.model.bundle.kind, a.model.version,
        a.route, a.fallback, ids(list(a.window)), a.history_len, ids(a.rows.tolist()),
        orjson.loads(orjson.dumps(a.scores, option=orjson.OPT_SERIALIZE_NUMPY)), a.arm, ts=a.ts,
        excluded=ids(a.excluded.tolist()))


def test_answers_of_two_models_read_back_as_their_own_records():
    news = served("nrms", [f"N{i}" for i in range(1, 9)], kind="nrms")
    seq = served("gru4recf", ["a", "b", "c", "d", "e"])
    seq.catalog.upsert(["added"], np.ones((1, 4), dtype=np.float32))  # row 6, past the bundle's
    answers = [
        answer(news, "rank", 0, "u1", [1, 2], [5, 3, 8], np.float32([0.9, 0.123456789, -2.5])),
        answer(seq, "recommend", 1, None, [], [6, 1], np.float32([3.25, 1e-8]), excluded=[2, 6, 4],
               fallback="popularity"),
        answer(news, "rank", 2, "u2", [8, 8, 1], [], np.float32([]), arm="exp/b"),
        answer(seq, "recommend", 3, "u3", [6, 2], [3], np.float64([0.1 + 0.2]), excluded=[6, 2]),  # float64
    ]
    lines, shown = columns.encode(answers, positions=2, salt=None, logging_on=True)
    assert len(lines) == 3  # one record a model and score type
    got = [r for line in lines for r in columns.expand(orjson.loads(line))]
    assert sorted(got, key=lambda r: r["ts"]) == [alone(a) for a in answers]
    assert got[0]["scores"] == [0.9, 0.12345679, -2.5]  # float32 as the answer printed it
    by_request = {request_id: (ts, summary) for request_id, ts, summary in shown}
    for a in answers:
        ts, summary = by_request[a.request_id]
        assert ts == a.ts
        assert summary == Summary(a.model.name, a.model.version, a.arm,
                                  a.model.catalog.ids_of(a.rows[:2].tolist())).encode()


def test_users_are_hashed_and_the_log_off_writes_no_line():
    seq = served("gru4recf", ["a", "b", "c"])
    answers = [answer(seq, "rank", 0, "u1", [1], [2, 3], np.float32([1, 2]), salt="pepper")]
    lines, _ = columns.encode(answers, 2, "pepper", True)
    [record] = columns.expand(orjson.loads(lines[0]))
    assert record == alone(answers[0], salt="pepper") and record["user"].startswith("h:")
    assert b"u1" not in lines[0]
    lines, shown = columns.encode(answers, 2, "pepper", False)
    assert lines == [] and len(shown) == 1  # clicks are still attributed


def test_the_reader_expands_them_and_names_a_line_whose_columns_disagree(tmp_path):
    seq = served("gru4recf", ["a", "b", "c"])
    answers = [answer(seq, "rank", n, "u1", [1], [2, 3], np.float32([1, 2])) for n in range(3)]
    [line] = columns.encode(answers, 2, None, True)[0]
    click = records.encode(records.event("u1", None, ["b"], "req-1", ts=T0 + 1.5))
    path = tmp_path / "records-20241205T000000-1-0001.jsonl"
    path.write_bytes(click + b"\n" + line + b"\n")
    assert [(r["type"], r["ts"]) for r in Reader(str(tmp_path)).records()] == [
        ("impression", T0), ("impression", T0 + 1), ("event", T0 + 1.5), ("impression", T0 + 2)]
    broken = json.loads(line)
    broken["items_n"][0] += 1
    path.write_bytes(line + b"\n" + json.dumps(broken).encode() + b"\n")
    with pytest.raises(LogError, match=rf"{path}:2: impressions record whose columns do not agree .*items"):
        list(Reader(str(tmp_path)).records())
