"""read_atomic: good files (order, vocabularies, features, filters) and every kind of bad file."""
from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from training.data.atomic import PAD, Vocab, read_atomic
from training.data.errors import DataError

HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float"


def write(folder: Path, name: str, suffix: str, lines: list[str], newline: str = "\n") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.{suffix}"
    path.write_bytes("".join(line + newline for line in lines).encode("utf-8"))
    return path


def dataset(tmp_path: Path, inter: list[str], item: list[str] | None = None, name: str = "toy") -> Path:
    write(tmp_path, name, "inter", inter)
    if item is not None:
        write(tmp_path, name, "item", item)
    return tmp_path


def error_of(tmp_path, **kwargs) -> DataError:
    with pytest.raises(DataError) as info:
        read_atomic(tmp_path, **kwargs)
    return info.value


# --- good files -------------------------------------------------------------------------------------------

INTER = [
    HEADER,
    "b\tx\t4\t30",     # line 2
    "a\ty\t5\t20",
    "b\ty\t3\t10",
    "a\tz\t2\t20",     # ties with line 3 (user a, time 20): file order kept
    "c\tx\t1\t5",
]


def test_order_vocabularies_and_columns(tmp_path):
    data = read_atomic(dataset(tmp_path, INTER))
    assert data.name == "toy"
    # vocabularies in order of first appearance in the file, 0 = padding
    assert data.users.ids == [PAD, "b", "a", "c"] and data.users.index == {"b": 1, "a": 2, "c": 3}
    assert data.items.ids == [PAD, "x", "y", "z"] and len(data.items) == 4
    # sorted by (user index, time), stable
    assert data.user.tolist() == [1, 1, 2, 2, 3]
    assert [data.items.ids[i] for i in data.item] == ["y", "x", "y", "z", "x"]
    assert data.timestamp.tolist() == [10, 30, 20, 20, 5]
    assert data.rating.tolist() == [3, 4, 5, 2, 1]
    assert data.user.dtype == data.item.dtype == np.int64
    assert data.timestamp.dtype == np.float64 and data.rating.dtype == np.float32
    assert data.item_features == {} and data.item_floats == {} and data.feature_vocabs == {}
    assert len(data.fingerprint) == 64


def test_fingerprint_follows_the_bytes(tmp_path):
    one = read_atomic(dataset(tmp_path / "one", INTER)).fingerprint
    assert read_atomic(dataset(tmp_path / "two", INTER)).fingerprint == one
    assert read_atomic(dataset(tmp_path / "three", INTER[:-1])).fingerprint != one
    with_item = read_atomic(dataset(tmp_path / "four", INTER, ["item_id:token\tc:token", "x\tk"])).fingerprint
    assert with_item != one


def test_without_timestamp_file_order_is_time_and_extra_columns_are_ignored(tmp_path):
    inter = ["item_id:token\tnote:token_seq\tuser_id:token\tscore:float\tvec:float_seq",
             "x\thello world\tu1\tnot-a-number\t1 2",
             "y\t\tu2\t\t",
             "z\tfoo\tu1\t3\t"]
    data = read_atomic(dataset(tmp_path, inter))
    assert data.rating is None
    assert data.users.ids == [PAD, "u1", "u2"]
    assert [data.items.ids[i] for i in data.item] == ["x", "z", "y"]
    assert data.timestamp.tolist() == [0, 2, 1]  # 0-based file row


def test_crlf_bom_and_blank_lines(tmp_path):
    write(tmp_path, "toy", "inter", INTER[:3] + [""] + INTER[3:], newline="\r\n")
    (tmp_path / "toy.inter").write_bytes(b"\xef\xbb\xbf" + (tmp_path / "toy.inter").read_bytes())
    data = read_atomic(tmp_path)
    assert data.users.ids == [PAD, "b", "a", "c"] and len(data.user) == 5


def test_name_selects_among_several_files(tmp_path):
    dataset(tmp_path, INTER, name="one")
    dataset(tmp_path, INTER[:3], name="two")
    assert len(read_atomic(tmp_path, "two").user) == 2
    assert len(read_atomic(tmp_path, "one.inter").user) == 5
    err = error_of(tmp_path)
    assert "one, two" in str(err) and err.line is None


ITEM = [
    "item_id:token\ttitle:token_seq\tyear:token\tprice:float\tclass:token_seq\temb:float_seq",
    "w\tnever rated\t1999\t9\tq\t0.1",      # only in .item: dropped
    "z\tthe zed\t2001\t\tb c\t0.3",          # empty price: missing
    "x\tex\t2001\t2\ta b a\t0.1 0.2",
    # y is missing: all-padding tokens, mean price
]


def test_item_features(tmp_path):
    data = read_atomic(dataset(tmp_path, INTER, ITEM))
    x, y, z = (data.items.index[s] for s in "xyz")
    assert set(data.item_features) == {"title", "year", "class"} and set(data.item_floats) == {"price"}

    title = data.item_features["title"]
    assert title.shape == (4, 2) and title.dtype == np.int64
    # tokens numbered by first appearance in .item among kept items ("never rated" belongs to a dropped item)
    assert data.feature_vocabs["title"].ids == [PAD, "the", "zed", "ex"]
    assert title[z].tolist() == [1, 2] and title[x].tolist() == [3, 0]
    assert title[0].tolist() == [0, 0] and title[y].tolist() == [0, 0]

    year = data.item_features["year"]
    assert year.shape == (4, 1) and year[:, 0].tolist() == [0, 1, 0, 1]
    assert data.feature_vocabs["year"].ids == [PAD, "2001"]

    cls = data.item_features["class"]
    assert data.feature_vocabs["class"].ids == [PAD, "b", "c", "a"]
    assert cls[x].tolist() == [3, 1, 3] and cls[z].tolist() == [1, 2, 0] and cls[y].tolist() == [0, 0, 0]

    price = data.item_floats["price"]
    assert price.dtype == np.float32 and price.shape == (4,)
    assert price[0] == 0 and price[x] == 2 and price[y] == 2 and price[z] == 2  # missing -> mean of known (2)


def test_item_fields_selects(tmp_path):
    data = read_atomic(dataset(tmp_path, INTER, ITEM), item_fields=["class"])
    assert set(data.item_features) == {"class"} and data.item_floats == {}
    assert read_atomic(tmp_path, item_fields=[]).item_features == {}


def test_missing_item_file_means_no_features(tmp_path):
    data = read_atomic(dataset(tmp_path, INTER))
    assert data.item_features == {} and data.feature_vocabs == {}


def test_min_rating(tmp_path):
    data = read_atomic(dataset(tmp_path, INTER), min_rating=3)
    assert data.rating.min() >= 3 and len(data.user) == 3
    # remapped after filtering: c (rating 1) is gone, z (rating 2) too
    assert data.users.ids == [PAD, "b", "a"] and data.items.ids == [PAD, "x", "y"]


def test_k_core_iterates_until_stable(tmp_path):
    # k = 2. u3 has one interaction -> dropped; then item q falls to one -> dropped;
    # then u2 falls to one -> dropped; then item p falls to one -> dropped. Left: u1, u4 x r, s.
    inter = ["user_id:token\titem_id:token",
             "u3\tq", "u2\tq", "u2\tp", "u1\tp", "u1\tr", "u1\ts", "u4\tr", "u4\ts"]
    data = read_atomic(dataset(tmp_path, inter), k_core=2)
    assert data.users.ids == [PAD, "u1", "u4"] and data.items.ids == [PAD, "r", "s"]
    assert data.user.tolist() == [1, 1, 2, 2] and data.item.tolist() == [1, 2, 1, 2]
    assert len(read_atomic(tmp_path, k_core=1).user) == 8


def reference_k_core(pairs: list[tuple[int, int]], k: int) -> list[tuple[int, int]]:
    while True:
        users = {u: sum(1 for p in pairs if p[0] == u) for u, _ in pairs}
        items = {i: sum(1 for p in pairs if p[1] == i) for _, i in pairs}
        kept = [p for p in pairs if users[p[0]] >= k and items[p[1]] >= k]
        if len(kept) == len(pairs):
            return kept
        pairs = kept


def test_k_core_matches_a_reference_on_random_data(tmp_path):
    rng = np.random.default_rng(3)
    for trial, k in itertools.product(range(3), (2, 3, 4)):
        pairs = [(int(u), int(i)) for u, i in zip(rng.zipf(1.6, 300) % 40, rng.zipf(1.4, 300) % 30)]
        lines = ["user_id:token\titem_id:token"] + [f"u{u}\ti{i}" for u, i in pairs]
        folder = dataset(tmp_path / f"{trial}-{k}", lines)
        expected = reference_k_core(pairs, k)
        if not expected:
            with pytest.raises(DataError, match="core"):
                read_atomic(folder, k_core=k)
            continue
        data = read_atomic(folder, k_core=k)
        got = sorted((data.users.ids[u], data.items.ids[i]) for u, i in zip(data.user, data.item))
        assert got == sorted((f"u{u}", f"i{i}") for u, i in expected)
        assert sorted(data.user.tolist()) == data.user.tolist()
        assert set(data.user.tolist()) == set(range(1, len(data.users)))
        assert set(data.item.tolist()) == set(range(1, len(data.items)))


def test_vocab_from_ids():
    vocab = Vocab.from_ids(["a", "b"])
    assert vocab.ids == [PAD, "a", "b"] and vocab.index == {"a": 1, "b": 2} and len(vocab) == 3


# --- bad files --------------------------------------------------------------------------------------------

def test_missing_folder_and_files(tmp_path):
    err = error_of(tmp_path / "nope")
    assert err.line is None and "no such dataset folder" in err.problem
    tmp_path.mkdir(exist_ok=True)
    assert "no *.inter" in error_of(tmp_path).problem
    err = error_of(tmp_path, name="toy")
    assert err.path.endswith("toy.inter") and err.problem == "file not found"
    dataset(tmp_path, INTER)
    err = error_of(tmp_path, item_fields=["class"])
    assert err.path.endswith("toy.item") and "not found" in err.problem


@pytest.mark.parametrize("lines, line, fragment", [
    ([], None, "empty file"),
    (["", "  "], None, "empty file"),
    ([HEADER], None, "only a header"),
    (["user_id:token\trating:float", "a\t1"], 1, "no item_id column"),
    (["item_id:token\ttimestamp:float", "a\t1"], 1, "no user_id column"),
    (["user_id:token\titem_id:token\trating:int", "a\tb\t1"], 1, "unknown type 'int'"),
    (["user_id:token\titem_id\trating:float", "a\tb\t1"], 1, "'item_id' is not name:type"),
    (["user_id:token\titem_id:token\tuser_id:token", "a\tb\tc"], 1, "twice"),
    (["user_id:float\titem_id:token", "1\tb"], 1, "user_id must be of type token"),
    (["user_id:token\titem_id:token\trating:token", "a\tb\t1"], 1, "rating must be of type float"),
    ([HEADER, "a\tb\t1\t1", "a\tb\t1"], 3, "expected 4 tab-separated fields as in the header, found 3"),
    ([HEADER, "a\tb\t1\t1", "", "a\tb\t1\t1\t7"], 4, "found 5"),   # blank lines still count
    ([HEADER, "a\tb\t1\t1", "a b 1 1"], 3, "found 1"),
    ([HEADER, "a\tb\t1\t1", "a\tc\tfive\t1"], 3, "rating: cannot read 'five' as a number"),
    ([HEADER, "a\tb\t1\t1", "a\tc\t2\t"], 3, "timestamp is empty"),
    ([HEADER, "a\tb\tnan\t1"], 2, "not a finite number"),
    ([HEADER, "a\tb\t1\tinf"], 2, "not a finite number"),
    ([HEADER, "a\tb\t1\t1", "\tc\t1\t1"], 3, "empty user_id"),
    ([HEADER, "a\t\t1\t1"], 2, "empty item_id"),
])
def test_bad_inter_files(tmp_path, lines, line, fragment):
    write(tmp_path, "toy", "inter", lines)
    err = error_of(tmp_path)
    assert err.line == line and fragment in err.problem, str(err)
    assert str(err) == (f"{tmp_path / 'toy.inter'}:{line}: {err.problem}" if line
                        else f"{tmp_path / 'toy.inter'}: {err.problem}")


def test_bad_utf8_names_its_line(tmp_path):
    (tmp_path / "toy.inter").write_bytes(b"user_id:token\titem_id:token\na\tb\nc\t\xff\n")
    err = error_of(tmp_path)
    assert err.line == 3 and "UTF-8" in err.problem


def test_filters_that_leave_nothing_name_the_filter(tmp_path):
    dataset(tmp_path, INTER)
    err = error_of(tmp_path, min_rating=6)
    assert err.line is None and "min_rating >= 6" in err.problem
    err = error_of(tmp_path, k_core=3)
    assert err.line is None and "3-core" in err.problem
    write(tmp_path, "toy", "inter", ["user_id:token\titem_id:token", "a\tb"])
    err = error_of(tmp_path, min_rating=1)
    assert err.line == 1 and "needs a rating column" in err.problem


@pytest.mark.parametrize("item, kwargs, line, fragment", [
    (["title:token_seq", "x"], {}, 1, "no item_id column"),
    (["item_id:token\tprice:float", "x\t1", "y\tcheap"], {}, 3, "price: cannot read 'cheap'"),
    (["item_id:token\tprice:float", "x\t1", "y\t1\t2"], {}, 3, "expected 2"),
    (["item_id:token\tc:token", "x\t1", "y\t2", "x\t3"], {}, 4, "'x' is listed again (first on line 2)"),
    (["item_id:token\tc:token", "x\t1"], {"item_fields": ["d"]}, 1, "no item field 'd'"),
    (["item_id:token\tc:token", "x\t1"], {"item_fields": ["item_id"]}, 1, "no item field 'item_id'"),
    (["item_id:token\tv:float_seq", "x\t1 2"], {"item_fields": ["v"]}, 1, "only token, token_seq and float"),
    (["item_id:token\tc:token_seq", "x\ta", "\tb"], {}, 3, "empty item_id"),
])
def test_bad_item_files(tmp_path, item, kwargs, line, fragment):
    dataset(tmp_path, INTER, item)
    err = error_of(tmp_path, **kwargs)
    assert err.path.endswith("toy.item") and err.line == line and fragment in err.problem, str(err)


def test_folder_errors_say_what_a_dataset_folder_holds_and_how_to_get_one(tmp_path):
    for folder in (tmp_path / "nope", tmp_path):
        problem = error_of(folder).problem
        assert "tab-separated" in problem and "recserve data fetch ml-100k" in problem, problem


def test_a_comma_separated_header_gets_a_hint_that_atomic_files_are_tab_separated(tmp_path):
    (tmp_path / "toy.inter").write_text("user_id:token,item_id:token,timestamp:float\nu1,i1,1\n")
    err = error_of(tmp_path)
    assert err.line == 1 and "atomic files are tab-separated" in err.problem
