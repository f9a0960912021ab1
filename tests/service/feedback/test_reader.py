"""The log read back: every record in [since, until) once, in ts order, from a Redis stream (in pages) or from
several processes' files (merged); cut-off last lines skipped, any other bad line an error naming file:line."""
from __future__ import annotations

import json

import pytest
import redis

from service.feedback import records
from service.feedback.reader import LogError, Reader, parse_time, redact, reorder
from service.feedback.records import stream_key
from tests.service.feedback.logs import REDIS_URL, T0, hand_made, write_files, xadd


def clicks(n: int, start: float = T0, step: float = 1.0, user: str = "u1") -> list[dict]:
    return [records.event(user, "m", [f"i{k}"], None, ts=start + k * step) for k in range(n)]


def test_the_stream_is_read_in_pages_every_record_once_in_order(redis_prefix, monkeypatch):
    recs = clicks(25)
    xadd(redis_prefix, recs[:7], batch=1)
    xadd(redis_prefix, recs[7:], batch=4)  # batches of records, one a line, as the sink writes them
    reader = Reader(REDIS_URL, redis_prefix, page=3)
    calls = []
    real = redis.Redis.xrange

    def counted(self, *args, **kwargs):
        calls.append(kwargs.get("count"))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(redis.Redis, "xrange", counted)
    assert list(reader.records()) == recs
    assert calls == [3] * 5  # 12 entries, 3 a page: 4 full pages, then an empty one says it is the end


def test_since_and_until_filter_by_the_records_time_not_the_stream_id(redis_prefix):
    # Entry ids are the Redis server's clock (now); ts is the writer's (2024): the bounds keep the skew margin,
    # and a record whose ts lies outside the range is left out however the ids fall.
    now = __import__("time").time()
    recs = clicks(10, start=now - 5, step=1.0)
    xadd(redis_prefix, recs)
    got = list(Reader(REDIS_URL, redis_prefix).records(since=now - 2, until=now + 2))
    assert [r["ts"] for r in got] == [r["ts"] for r in recs[3:7]]


def test_an_absent_stream_is_an_empty_log(redis_prefix):
    assert list(Reader(REDIS_URL, redis_prefix).records()) == []


def test_a_stream_entry_without_the_record_field_names_the_entry(redis_prefix):
    redis.Redis.from_url(REDIS_URL).xadd(stream_key(redis_prefix), {b"x": b"1"})
    with pytest.raises(LogError, match=r"stream .*:\{log\}:records entry \d+-\d+: no field 'r'"):
        list(Reader(REDIS_URL, redis_prefix).records())


def test_an_unreachable_redis_is_one_error_without_the_password():
    reader = Reader("redis://:secret@127.0.0.1:1/0", "p")
    with pytest.raises(LogError) as err:
        list(reader.records())
    assert "secret" not in str(err.value) and "redis://:***@127.0.0.1:1/0" in str(err.value)
    assert redact("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


def test_files_of_several_processes_are_merged_by_time(tmp_path):
    recs = hand_made()
    write_files(tmp_path, {1: recs[0::3], 2: recs[1::3]})
    write_files(tmp_path, {3: recs[2::3]}, seq=2)
    got = list(Reader(str(tmp_path)).records())
    assert [r["ts"] for r in got] == sorted(r["ts"] for r in recs)
    assert sorted(map(json.dumps, got)) == sorted(map(json.dumps, recs))


def test_files_are_filtered_by_time_and_files_begun_after_until_are_not_opened(tmp_path):
    early, late = clicks(5, start=T0), clicks(5, start=T0 + 86_400)
    _, late_file = write_files(tmp_path, {1: early, 2: late})
    late_file.write_text("not json\n")  # never read: it began a day after --until
    got = list(Reader(str(tmp_path)).records(since=T0 + 1, until=T0 + 3))
    assert [r["ts"] for r in got] == [T0 + 1, T0 + 2]


def test_a_cut_off_last_line_is_skipped_and_counted(tmp_path):
    (path,) = write_files(tmp_path, {1: clicks(3)})
    with open(path, "a") as f:
        f.write('{"type": "event", "ts": 17')
    reader = Reader(str(tmp_path))
    assert len(list(reader.records())) == 3
    assert reader.partial == 1


@pytest.mark.parametrize("line, problem", [
    ("{not json", "not a JSON record"),
    ('["a list"]', "not a log record"),
    ('{"type": "event"}', "not a log record"),
    ('{"type": "event", "ts": "soon"}', "not a log record"),
    ('{"type": "impression", "ts": 1.0, "model": "m", "items": null}', "impression record without items"),
    ('{"type": "event", "ts": 1.0, "items": ["a"]}', "event record without user"),
])
def test_a_malformed_line_is_an_error_naming_file_and_line(tmp_path, line, problem):
    (path,) = write_files(tmp_path, {1: clicks(3)})
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:2] + [line] + lines[2:]) + "\n")
    with pytest.raises(LogError, match=rf"^{path}:3: {problem}"):
        list(Reader(str(tmp_path)).records())


def test_records_of_an_unknown_type_are_skipped_and_counted(tmp_path):
    recs = clicks(2)
    recs.insert(1, {"type": "experiment", "v": 2, "ts": T0 + 0.5})
    write_files(tmp_path, {1: recs})
    reader = Reader(str(tmp_path))
    assert [r["ts"] for r in reader.records()] == [T0, T0 + 1]
    assert reader.unknown == 1


def test_a_missing_folder_is_named():
    with pytest.raises(LogError, match="log /no/such/folder: no such folder"):
        Reader("/no/such/folder")


def test_reorder_sorts_what_arrives_within_the_margin_and_holds_no_more():
    recs = [{"ts": t} for t in (1, 3, 2, 5, 4, 9, 6, 20)]
    assert [r["ts"] for r in reorder(iter(recs), margin_s=3)] == [1, 2, 3, 4, 5, 6, 9, 20]
    released = []
    source = iter(recs)
    out = reorder(source, margin_s=3)
    released.append(next(out)["ts"])  # 1 leaves once 5 (more than 3 later) has arrived, not at the end
    assert released == [1] and next(source)["ts"] == 4


@pytest.mark.parametrize("text, expected", [
    ("1733385600", T0), ("1733385600.5", T0 + 0.5), ("2024-12-05T08:00:00Z", T0), ("2024-12-05T08:00:00", T0),
    ("2024-12-05T09:00:00+01:00", T0), ("2024-12-05", T0 - 8 * 3600),
])
def test_times_are_unix_seconds_or_iso_8601_in_utc_by_default(text, expected):
    assert parse_time(text) == expected


def test_a_time_that_is_neither_is_refused():
    with pytest.raises(ValueError, match="not a time: 'yesterday'"):
        parse_time("yesterday")


def test_a_process_files_are_read_one_after_another_one_open_at_a_time(tmp_path, monkeypatch):
    # The files sink names all of a process's files by the process's start: records-<start>-<pid>-<seq>.jsonl.
    recs = clicks(12)
    for pid in (5, 6):
        for n, seq in enumerate((1, 2, 10)):  # 0010 sorts after 0002, as it must
            part = recs[pid - 5::2][n * 2:n * 2 + 2]
            (tmp_path / f"records-20241205T075959-{pid}-{seq:04d}.jsonl").write_text(
                "".join(json.dumps(r) + "\n" for r in part))
    active, most, real = set(), [0], Reader._lines

    def tracked(self, path):
        active.add(path)
        most[0] = max(most[0], len(active))
        try:
            yield from real(self, path)
        finally:
            active.discard(path)

    monkeypatch.setattr(Reader, "_lines", tracked)
    assert list(Reader(str(tmp_path)).records()) == recs
    assert most == [2]  # two processes, one file each at a time
