import json

import numpy as np
import pytest

from bundle.tokenizers import WordTokenizer, load_tokenizer


def test_tokenize_lowercases_and_splits_punctuation():
    tok = WordTokenizer({}, title_size=30)
    assert tok.tokenize("Trump's Aid, FREEZE?! 50 Worst|Habits; done.") == [
        "trump", "s", "aid", ",", "freeze", "?", "!", "50", "worst", "|", "habits", ";", "done", "."]
    # characters outside the rule (quotes, dashes, colons) are dropped
    assert tok.tokenize("Stay In Touch---60 Years: 'ok'") == ["stay", "in", "touch", "60", "years", "ok"]


def test_fit_orders_by_frequency_then_alphabet_and_respects_min_count():
    tok = WordTokenizer.fit(["b a c", "a b", "a d"], title_size=4)
    assert tok.vocab == {"a": 1, "b": 2, "c": 3, "d": 4}
    assert tok.vocab_size == 5
    assert WordTokenizer.fit(["b a c", "a b", "a d"], min_count=2).vocab == {"a": 1, "b": 2}


def test_encode_pads_truncates_and_maps_unknown_to_zero():
    tok = WordTokenizer({"hello": 1, "world": 2, ".": 3}, title_size=4)
    out = tok.encode(["Hello world.", "hello strange world . world", ""])
    assert out.dtype == np.int64 and out.shape == (3, 4)
    assert out.tolist() == [[1, 2, 3, 0], [1, 0, 2, 3], [0, 0, 0, 0]]
    assert tok.encode([]).shape == (0, 4)
    with pytest.raises(TypeError):
        tok.encode("a single string")


def test_save_load_round_trip(tmp_path):
    tok = WordTokenizer.fit(["Queen Elizabeth, Prince Charles", "Prince Philip!"], title_size=7)
    path = tok.save(tmp_path / "tokenizer.json")
    spec = json.loads(path.read_text())
    assert spec["type"] == "word-regex" and spec["lowercase"] is True and spec["title_size"] == 7
    assert spec["pattern"] == r"[\w]+|[.,!?;|]"
    again = load_tokenizer(path)
    assert isinstance(again, WordTokenizer) and again == tok
    assert WordTokenizer.load(tmp_path) == tok  # a directory holding tokenizer.json works too
    titles = ["Prince Charles visits Philip!", "Nothing known"]
    assert np.array_equal(again.encode(titles), tok.encode(titles))


def test_unknown_type_is_a_clear_error(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"type": "sentencepiece", "vocab": {}}))
    with pytest.raises(ValueError, match="unknown tokenizer type 'sentencepiece'"):
        load_tokenizer(tmp_path / "a.json")
    (tmp_path / "hf.json").write_text(json.dumps({"version": "1.0", "model": {"type": "WordPiece"}}))
    with pytest.raises(ValueError, match="Hugging Face tokenizer: title_size"):  # no truncation.max_length
        load_tokenizer(tmp_path / "hf.json")


def test_invalid_vocab_rejected():
    with pytest.raises(ValueError):
        WordTokenizer({"a": 0})
    with pytest.raises(ValueError):
        WordTokenizer({"a": 1, "b": 1})


def test_bundle_package_does_not_import_torch():
    import subprocess
    import sys

    code = ("import sys, bundle.contract, bundle.data, bundle.reader, bundle.tokenizers; "
            "assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
