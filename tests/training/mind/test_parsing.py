import logging

import numpy as np
import pytest

from bundle.tokenizers import WordTokenizer
from training.data.errors import DataError
from training.data.mind import read_behaviors, read_mind, read_news

from .conftest import NEWS, write


def test_read_news_fields_indices_and_tokens(news_path):
    news, tok = read_news(news_path, title_size=5)
    assert news.ids[0] == "[PAD]" and news.ids[1:] == ["N1", "N2", "N3", "N4", "N5", "N6"]
    assert news.index["N1"] == 1 and news.index["N6"] == 6 and "[PAD]" not in news.index
    assert len(news) == 7 and news.n_news == 6
    assert news.category[2] == "finance" and news.subcategory[2] == "" and news.abstract[2] == ""
    assert news.abstract[1] == "A long game."
    assert news.title_tokens.dtype == np.int64 and news.title_tokens.shape == (7, 5)
    assert not news.title_tokens[0].any()
    v = tok.vocab
    assert news.title_tokens[1].tolist() == [v["the"], v["team"], v["wins"], v["!"], 0]
    assert news.title_tokens[2].tolist() == [v["stocks"], v["fall"], v[","], v["again"], 0]


def test_read_news_with_given_tokenizer_uses_its_title_size_and_unknown_zero(news_path):
    tok = WordTokenizer({"team": 1, "coach": 2}, title_size=3)
    news, same = read_news(news_path, tokenizer=tok, title_size=99)
    assert same is tok and news.title_tokens.shape == (7, 3)
    assert news.title_tokens[1].tolist() == [0, 1, 0]   # "the" unknown -> 0
    assert news.title_tokens[4].tolist() == [2, 0, 0]


def test_news_short_lines_accepted_with_empty_trailing_columns(tmp_path):
    path = write(tmp_path / "news.tsv", ["N1\tsports\tsoccer\tTitle one", "N2\tnews\t\tTitle two\tabs"])
    news, _ = read_news(path)
    assert news.ids[1:] == ["N1", "N2"] and news.abstract[1:] == ["", "abs"]


@pytest.mark.parametrize("bad, problem", [
    ("N9\tsports\tsoccer", "expected 8 tab-separated columns"),
    ("N9\ta\tb\tc\td\te\tf\tg\th", "expected 8 tab-separated columns"),
    ("\tsports\tsoccer\tTitle\t\t\t[]\t[]", "empty news id"),
    ("N2\tsports\tsoccer\tAgain\t\t\t[]\t[]", "duplicate news id 'N2' (first on line 2)"),
])
def test_news_errors_name_file_and_line(tmp_path, bad, problem):
    path = write(tmp_path / "news.tsv", NEWS[:3] + [bad])
    with pytest.raises(DataError) as e:
        read_news(path)
    assert e.value.line == 4 and e.value.path == str(path)
    assert str(e.value).startswith(f"{path}:4: {problem}")


def test_empty_files_are_errors(tmp_path, news_path):
    empty = write(tmp_path / "empty.tsv", [])
    with pytest.raises(DataError, match="empty file"):
        read_news(empty)
    news, _ = read_news(news_path)
    with pytest.raises(DataError, match="empty file"):
        read_behaviors(empty, news)


def test_behaviors_csr_order_empty_history_and_time(tmp_path, news_path):
    news, _ = read_news(news_path)
    path = write(tmp_path / "behaviors.tsv", [
        "1\tU1\t11/13/2019 8:36:57 AM\tN3 N1 N3\tN2-1 N4-0 N5-0",
        "2\tU2\t11/9/2019 12:05:00 PM\t\tN6-0 N1-1",
        "3\tU1\t1/2/2020 12:00:01 AM\tN5\tN4-1",
    ])
    imps = read_behaviors(path, news)
    assert len(imps) == 3 and imps.impression_id == ["1", "2", "3"] and imps.user_id == ["U1", "U2", "U1"]
    assert imps.time.dtype == np.dtype("datetime64[s]")
    assert imps.time.tolist()[0].isoformat() == "2019-11-13T08:36:57"
    assert str(imps.time[1]) == "2019-11-09T12:05:00" and str(imps.time[2]) == "2020-01-02T00:00:01"
    assert imps.history_indptr.tolist() == [0, 3, 3, 4]
    assert imps.history_items.tolist() == [3, 1, 3, 5]       # file order, repeats kept
    assert imps.cand_indptr.tolist() == [0, 3, 5, 6]
    assert imps.cand_items.tolist() == [2, 4, 5, 6, 1, 4]
    assert imps.cand_labels.tolist() == [1, 0, 0, 0, 1, 1]
    assert imps.missing_news == 0


@pytest.mark.parametrize("bad, problem", [
    ("9\tU1\t11/13/2019 8:36:57 AM\tN1", "expected 5 tab-separated columns, got 4"),
    ("9\tU1\t11/13/2019 8:36:57 AM\tN1\tN2-1\textra", "expected 5 tab-separated columns, got 6"),
    ("9\tU1\t2019-11-13 08:36:57\tN1\tN2-1", "unparsable time"),
    ("9\tU1\t13/13/2019 8:36:57 AM\tN1\tN2-1", "unparsable time"),
    ("9\tU1\t11/13/2019 13:36:57 PM\tN1\tN2-1", "unparsable time"),
    ("9\tU1\t11/13/2019 8:36:57 AM\tN1\tN2-1 N3", "malformed impression 'N3'"),
    ("9\tU1\t11/13/2019 8:36:57 AM\tN1\tN2-1 N3-2", "malformed impression 'N3-2'"),
    ("9\tU1\t11/13/2019 8:36:57 AM\tN1\tN2-1 -1", "malformed impression '-1'"),
    ("9\tU1\t11/13/2019 8:36:57 AM\tN1\t", "no impressions"),
])
def test_behaviors_errors_name_file_and_line(tmp_path, news_path, bad, problem):
    news, _ = read_news(news_path)
    good = "1\tU1\t11/13/2019 8:36:57 AM\tN3\tN2-1 N4-0"
    path = write(tmp_path / "behaviors.tsv", [good, good, bad])
    with pytest.raises(DataError) as e:
        read_behaviors(path, news)
    assert e.value.line == 3
    assert str(e.value).startswith(f"{path}:3: {problem}")


def test_unknown_news_skipped_counted_and_warned_once(tmp_path, news_path, caplog):
    news, _ = read_news(news_path)
    path = write(tmp_path / "behaviors.tsv", [
        "1\tU1\t11/13/2019 8:36:57 AM\tN1 NX1 N2\tN3-1 NX2-0 N4-0",
        "2\tU2\t11/13/2019 9:00:00 AM\tNX1\tNX3-1 N5-0",
    ])
    with caplog.at_level(logging.WARNING, logger="training.data.mind"):
        imps = read_behaviors(path, news)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "3 news ids not in news.tsv" in warnings[0].getMessage()
    assert imps.missing_news == 3
    assert imps.history_items.tolist() == [1, 2] and imps.history_indptr.tolist() == [0, 2, 2]
    assert imps.cand_items.tolist() == [3, 4, 5] and imps.cand_labels.tolist() == [1, 0, 0]
    assert imps.cand_indptr.tolist() == [0, 2, 3]


def test_read_mind_splits_on_last_calendar_day(tmp_path, news_path, caplog):
    write(tmp_path / "behaviors.tsv", [
        "1\tU1\t11/12/2019 11:59:59 PM\tN1\tN2-1 N3-0",
        "2\tU2\t11/13/2019 12:00:00 AM\tN2\tN4-1 N5-0",
        "3\tU3\t11/11/2019 8:00:00 AM\t\tN6-1 N1-0",
        "4\tU1\t11/13/2019 11:00:00 PM\tN1 NX\tN3-1 N5-0",
    ])
    with caplog.at_level(logging.WARNING, logger="training.data.mind"):
        data = read_mind(tmp_path, title_size=6)
    assert data.train.impression_id == ["1", "3"] and data.valid.impression_id == ["2", "4"]
    assert data.train.cand_items.tolist() == [2, 3, 6, 1] and data.train.cand_indptr.tolist() == [0, 2, 4]
    assert data.valid.history_items.tolist() == [2, 1] and data.valid.history_indptr.tolist() == [0, 1, 2]
    assert data.missing_news == 1 and len(caplog.records) == 1
    assert data.news.title_tokens.shape == (7, 6) and data.tokenizer.title_size == 6
    assert len(data.fingerprint) == 64
    assert read_mind(tmp_path).fingerprint == data.fingerprint
    write(tmp_path / "behaviors.tsv", ["1\tU1\t11/12/2019 11:59:59 PM\tN1\tN2-1 N3-0"])
    with pytest.raises(DataError, match="one day"):
        read_mind(tmp_path)


def test_read_mind_with_separate_validation_file_and_its_news(tmp_path, news_path):
    write(tmp_path / "behaviors.tsv", [
        "1\tU1\t11/12/2019 1:00:00 PM\tN1\tN2-1 N3-0",
        "2\tU2\t11/13/2019 1:00:00 PM\tN2\tN4-1 N5-0",
    ])
    dev = tmp_path / "dev"
    dev.mkdir()
    write(dev / "news.tsv", [NEWS[0], "N7\tscience\t\tMars rover\t\t\t[]\t[]"])  # N1 again: kept once
    valid = write(dev / "behaviors.tsv", ["9\tU3\t11/15/2019 1:00:00 PM\tN1 N7\tN7-1 N2-0"])
    data = read_mind(tmp_path, valid_behaviors=valid)
    assert data.train.impression_id == ["1", "2"] and data.valid.impression_id == ["9"]
    assert data.news.ids == ["[PAD]", "N1", "N2", "N3", "N4", "N5", "N6", "N7"]
    assert data.valid.cand_items.tolist() == [7, 2] and data.missing_news == 0
    assert "mars" in data.tokenizer.vocab
    assert data.fingerprint != read_mind(tmp_path).fingerprint


def test_an_empty_folder_names_the_mind_files_and_how_to_get_them(tmp_path):
    with pytest.raises(DataError) as err:
        read_mind(tmp_path)
    assert err.value.path.endswith("news.tsv") and "recserve data fetch mind-small" in err.value.problem
