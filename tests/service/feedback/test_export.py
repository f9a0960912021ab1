"""`recserve logs export` on a hand-made log (tests/service/feedback/logs.py): the exact MIND and RecBole lines,
attribution within the window only, the Parquet tables, merging with earlier data, one-line errors."""
from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from recserve.cli import main
from service.feedback import records
from service.feedback.export import mind_time
from tests.service.feedback.logs import REDIS_URL, T0, hand_made, write_files, xadd
from tests.training.test_cli import one_error_line

BEHAVIORS = [
    "r1\tu1\t12/5/2024 8:00:10 AM\tN1 N5\tN2-1 N3-0 N-new-0",  # N3's click came 2000 s later: not attributed
    "r3\t\t12/6/2024 8:00:00 AM\tN2\tN8-0 N9-1",                # by history alone: no user
]                                                               # r2 had no click; the shadow arm is no row
INTER = ["user_id:token\titem_id:token\ttimestamp:float",
         "u1\ti7\t1733385830.0", "u2\ti1\t1733385900.0", "u2\ti2\t1733385900.0",  # clicks naming bert4rec
         "u3\ti8\t1733386000.0"]  # a click naming no model, on an item bert4rec showed (not i4: no model did)
NEWS_GIVEN = ["N1\tnews\tsub\tOld title one\tabstract\turl\t[]\t[]", "N-new\tx\t\tStale\t\t\t\t",
              "N2\tnews\t\tTitle two\t\t\t\t"]


def export(source: str, out: Path, *extra: str) -> int:
    return main(["logs", "export", "--source", source, "--out", str(out), *extra])


@pytest.fixture()
def news_file(tmp_path) -> Path:
    path = tmp_path / "news.tsv"
    path.write_text("\n".join(NEWS_GIVEN) + "\n")
    return path


def check_export(out: Path) -> None:
    assert (out / "nrms" / "behaviors.tsv").read_text().splitlines() == BEHAVIORS
    assert (out / "bert4rec" / "bert4rec.inter").read_text().splitlines() == INTER
    assert sorted(p.name for p in (out / "nrms").iterdir()) == ["behaviors.tsv", "news.tsv"]


def test_files_export_mind_and_atomic_lines(tmp_path, capsys, news_file):
    recs = hand_made()
    write_files(tmp_path / "log", {7: recs[::2], 8: recs[1::2]})
    assert export(str(tmp_path / "log"), tmp_path / "out", "--news", f"nrms={news_file}") == 0
    check_export(tmp_path / "out")
    # The given rows first, the added item last: it replaces the given row of its id, with its latest title.
    assert (tmp_path / "out" / "nrms" / "news.tsv").read_text().splitlines() == [
        NEWS_GIVEN[0], NEWS_GIVEN[2], "N-new\tsports\t\tBetter title\t\t\t\t"]
    captured = capsys.readouterr()
    out = tmp_path / "out"
    assert captured.out == (f"5 impressions, 7 events (3 attributed), 2 added items: wrote {out}/nrms/behaviors.tsv, "
                            f"{out}/nrms/news.tsv, {out}/bert4rec/bert4rec.inter, {out}/impressions.parquet, "
                            f"{out}/events.parquet\n")
    # behaviors.tsv names N3, N5, N8, N9, in neither news.tsv nor the added items: training would skip them.
    assert captured.err == (f"recserve: warning: {out}/nrms/news.tsv: 4 item ids of behaviors.tsv are in neither "
                            f"--news nor the added items, e.g. N3, N5, N8; training skips them (pass --news "
                            f"nrms=<the news.tsv the bundle was trained on>)\n"
                            "recserve: warning: 1 clicks naming no model were on items no interaction model showed, "
                            "saw or was given: left out of every .inter\n")


def test_the_redis_stream_exports_the_same_lines(tmp_path, redis_prefix, capsys):
    xadd(redis_prefix, hand_made(), batch=3)
    assert export(REDIS_URL, tmp_path / "out", "--prefix", redis_prefix) == 0
    check_export(tmp_path / "out")
    assert (tmp_path / "out" / "nrms" / "news.tsv").read_text() == "N-new\tsports\t\tBetter title\t\t\t\t\n"
    assert "5 impressions, 7 events (3 attributed)" in capsys.readouterr().out


def test_a_longer_window_attributes_the_late_click(tmp_path, capsys):
    write_files(tmp_path / "log", {1: hand_made()})
    assert export(str(tmp_path / "log"), tmp_path / "out", "--window", "2000") == 0
    assert (tmp_path / "out" / "nrms" / "behaviors.tsv").read_text().splitlines()[0].endswith("N2-1 N3-1 N-new-0")
    assert "(4 attributed)" in capsys.readouterr().out


def test_other_event_types_count_when_asked(tmp_path, capsys):
    write_files(tmp_path / "log", {1: hand_made()})
    assert export(str(tmp_path / "log"), tmp_path / "out", "--event-types", "click", "purchase") == 0
    assert "u1\ti8\t1733386100.0" in (tmp_path / "out" / "bert4rec" / "bert4rec.inter").read_text().splitlines()


def test_since_and_until_bound_the_export(tmp_path, capsys):
    write_files(tmp_path / "log", {1: hand_made()})
    assert export(str(tmp_path / "log"), tmp_path / "out", "--since", "2024-12-06T00:00:00Z",
                  "--until", str(T0 + 2 * 86_400)) == 0
    assert (tmp_path / "out" / "nrms" / "behaviors.tsv").read_text().splitlines() == BEHAVIORS[1:]
    assert not (tmp_path / "out" / "bert4rec").exists()
    assert capsys.readouterr().out.startswith("1 impressions, 1 events (1 attributed), 0 added items")


def test_parquet_tables_hold_every_impression_and_event(tmp_path, capsys):
    write_files(tmp_path / "log", {1: hand_made()})
    assert export(str(tmp_path / "log"), tmp_path / "out") == 0
    impressions = pq.read_table(tmp_path / "out" / "impressions.parquet").to_pylist()
    assert [(r["request_id"], r["arm"], r["shadow"], r["clicked"]) for r in impressions] == [
        ("r1", "default", False, ["N2"]), ("r1", "b", True, ["N2"]), ("r2", "default", False, []),
        ("r4", "default", False, ["i7"]), ("r3", "default", False, ["N9"])]
    assert impressions[0]["scores"] == [0.9, 0.5, 0.1] and impressions[0]["history_len"] == 7
    events = pq.read_table(tmp_path / "out" / "events.parquet").to_pylist()
    assert [(e["request_id"], e["event"], e["attributed"]) for e in events] == [
        ("r1", "click", True), ("r4", "click", True), (None, "click", False), (None, "click", False),
        (None, "purchase", False), ("r1", "click", False), ("r3", "click", True)]


def test_an_earlier_inter_leads_the_exported_one(tmp_path, capsys):
    earlier = tmp_path / "ml.inter"
    earlier.write_text("user_id:token\titem_id:token\trating:float\ttimestamp:float\nu9\ti1\t4\t100\n\n")
    write_files(tmp_path / "log", {1: hand_made()})
    assert export(str(tmp_path / "log"), tmp_path / "out", "--merge-inter", f"bert4rec={earlier}") == 0
    lines = (tmp_path / "out" / "bert4rec" / "bert4rec.inter").read_text().splitlines()
    assert lines == INTER[:1] + ["u9\ti1\t100"] + INTER[1:]


def test_an_inter_without_timestamps_cannot_be_merged(tmp_path, capsys):
    earlier = tmp_path / "ml.inter"
    earlier.write_text("user_id:token\titem_id:token\nu9\ti1\n")
    write_files(tmp_path / "log", {1: hand_made()})
    assert export(str(tmp_path / "log"), tmp_path / "out", "--merge-inter", f"bert4rec={earlier}") == 2
    assert one_error_line(capsys) == (f"recserve: error: --merge-inter {earlier}: the header needs user_id, item_id "
                                      "and timestamp columns (it has user_id:token, item_id:token)")


@pytest.mark.parametrize("option, value, problem", [
    ("--news", "news.tsv", "--news 'news.tsv': expected MODEL=FILE"),
    ("--merge-inter", "m=/no/such.inter", "--merge-inter m=/no/such.inter: no such file /no/such.inter"),
])
def test_bad_model_file_options_are_one_line(tmp_path, capsys, option, value, problem):
    write_files(tmp_path / "log", {1: hand_made()})
    assert export(str(tmp_path / "log"), tmp_path / "out", option, value) == 2
    assert one_error_line(capsys) == f"recserve: error: {problem}"


def test_an_output_folder_with_files_is_refused(tmp_path, capsys):
    write_files(tmp_path / "log", {1: hand_made()})
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.tsv").write_text("x")
    assert export(str(tmp_path / "log"), tmp_path / "out") == 2
    assert one_error_line(capsys) == (f"recserve: error: --out {tmp_path / 'out'}: not an empty folder (the export "
                                      "never mixes with older files)")


def test_a_malformed_log_line_is_one_error_naming_it(tmp_path, capsys):
    (path,) = write_files(tmp_path / "log", {1: hand_made()})
    path.write_text(path.read_text().replace('"type": "event"', '"type": 3', 1))
    assert export(str(tmp_path / "log"), tmp_path / "out") == 2
    assert one_error_line(capsys).startswith(f"recserve: error: {path}:5: not a log record")
    assert list((tmp_path / "out").iterdir()) == []  # nothing half-written: a second run may use the folder


@pytest.mark.parametrize("ts, text", [(T0, "12/5/2024 8:00:00 AM"), (T0 - 8 * 3600, "12/5/2024 12:00:00 AM"),
                                      (T0 + 4 * 3600 + 0.9, "12/5/2024 12:00:00 PM"),
                                      (T0 + 5 * 3600 + 61, "12/5/2024 1:01:01 PM")])
def test_times_are_written_as_mind_writes_them_in_utc(ts, text):
    assert mind_time(ts) == text


def test_a_model_name_that_cannot_be_a_folder_is_refused(tmp_path, capsys):
    recs = hand_made()
    recs[1]["model"] = "../elsewhere"
    write_files(tmp_path / "log", {1: recs})
    assert export(str(tmp_path / "log"), tmp_path / "out") == 2
    assert one_error_line(capsys) == ("recserve: error: model name '../elsewhere' in the log cannot name a folder "
                                      "(letters, digits, . _ -)")
    assert not (tmp_path / "elsewhere").exists()


def test_a_click_naming_no_model_goes_to_the_models_that_know_its_item(tmp_path, capsys):
    imp = records.impression
    log = [imp("a", "u1", "bert4rec", "bert4rec", "v", "recommend", None, ["i0"], 1, ["i1"], [1.0], ts=T0),
           imp("b", "u1", "convncf", "convncf", "v", "recommend", None, [], 0, ["j1"], [1.0], ts=T0 + 1),
           records.event("u1", None, ["i0", "i1", "j1", "j9", "N1"], None, ts=T0 + 2)]
    write_files(tmp_path / "log", {1: log})
    earlier = tmp_path / "c.inter"
    earlier.write_text("user_id:token\titem_id:token\ttimestamp:float\nu7\tj9\t5\n")
    assert export(str(tmp_path / "log"), tmp_path / "out", "--merge-inter", f"convncf={earlier}") == 0
    rows = {m: (tmp_path / "out" / m / f"{m}.inter").read_text().splitlines()[1:] for m in ("bert4rec", "convncf")}
    ts = repr(T0 + 2)
    assert rows == {"bert4rec": [f"u1\ti0\t{ts}", f"u1\ti1\t{ts}"],
                    "convncf": ["u7\tj9\t5", f"u1\tj1\t{ts}", f"u1\tj9\t{ts}"]}
    assert "warning: 1 clicks naming no model" in capsys.readouterr().err  # N1: no interaction model knows it
