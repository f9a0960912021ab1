"""The item-input tokenizers: raw titles -> the item encoder's inputs (the bundle's ``tokenizer.json``).

Part of the bundle contract: training (``training.data.mind``) fits and saves a tokenizer, the service
loads it from a bundle to encode news it has never seen. Every tokenizer offers the one item-input
interface, ``ItemInputEncoder``: titles in, the item encoder's named inputs out. It needs numpy and the
standard library only: the serving image has no torch.

The rule is the one of Microsoft recommenders' ``mind_iterator.py``: lower-case the text, then
``re.findall(r"[\\w]+|[.,!?;|]", text)``. Each token maps to an id from a word dictionary; id 0 is padding
and unknown words also map to 0 (as the reference does), so an unknown word looks like padding to the model.

``tokenizer.json`` (a bundle file)::

    {"type": "word-regex", "pattern": "[\\\\w]+|[.,!?;|]", "lowercase": true, "title_size": 30,
     "vocab": {"the": 1, "to": 2, ...}}

``load_tokenizer`` dispatches on ``"type"``. A file without ``"type"`` and with ``"model"`` is a Hugging Face
fast-tokenizer file (``tokenizers``' own ``tokenizer.json``, as a pretrained encoder ships it): ``HFTokenizer``
reads it with the ``tokenizers`` library (no torch, no transformers), its inputs ``input_ids`` and
``attention_mask``, truncated at the file's ``truncation.max_length``, padded to the batch's longest title.
"""
from __future__ import annotations

import json
import os
import re
from collections import Counter
from pathlib import Path
from typing import Iterable, Protocol, Sequence

import numpy as np

__all__ = ["ItemInputEncoder", "WordTokenizer", "HFTokenizer", "load_tokenizer", "tokenizer_from_spec", "PATTERN",
           "PAD_ID", "UNK_ID"]

PATTERN = r"[\w]+|[.,!?;|]"
PAD_ID = 0
UNK_ID = 0  # as the reference: an unknown word is indistinguishable from padding


class ItemInputEncoder(Protocol):
    """What the service needs from any tokenizer: raw titles in, the item encoder's inputs out."""

    input_names: tuple[str, ...]

    def item_inputs(self, titles: Sequence[str]) -> dict[str, np.ndarray]: ...


class WordTokenizer:
    """Regex word tokenizer with a word dictionary (ids >= 1; 0 = padding and unknown)."""

    type = "word-regex"
    input_names = ("title_tokens",)

    def __init__(self, vocab: dict[str, int], title_size: int = 30, *,
                 pattern: str = PATTERN, lowercase: bool = True):
        if title_size < 1:
            raise ValueError(f"title_size must be >= 1, got {title_size}")
        ids = list(vocab.values())
        if any((not isinstance(i, int)) or isinstance(i, bool) or i < 1 for i in ids):
            raise ValueError("word ids must be integers >= 1 (0 is padding)")
        if len(set(ids)) != len(ids):
            raise ValueError("word ids must be unique")
        self.vocab: dict[str, int] = dict(vocab)
        self.title_size = int(title_size)
        self.pattern = pattern
        self.lowercase = bool(lowercase)
        self._regex = re.compile(pattern)

    # ------------------------------------------------------------------ building
    @classmethod
    def fit(cls, titles: Iterable[str], title_size: int = 30, min_count: int = 1,
            max_words: int | None = None) -> "WordTokenizer":
        """Build the dictionary from ``titles``: words seen at least ``min_count`` times get ids 1, 2, ...
        by descending frequency, ties broken alphabetically (deterministic). ``max_words`` keeps the most
        frequent ones only."""
        tok = cls({}, title_size)
        counts: Counter[str] = Counter()
        for title in titles:
            counts.update(tok.tokenize(title))
        words = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
        if max_words is not None:
            words = words[:max_words]
        tok.vocab = {w: i for i, w in enumerate(words, start=1)}
        return tok

    # ------------------------------------------------------------------ using
    @property
    def vocab_size(self) -> int:
        """Rows an embedding table needs: the largest id + 1 (row 0 = padding)."""
        return max(self.vocab.values(), default=0) + 1

    def tokenize(self, text: str) -> list[str]:
        if self.lowercase:
            text = text.lower()
        return self._regex.findall(text)

    def encode(self, titles: Sequence[str]) -> np.ndarray:
        """``int64 [N, title_size]``: ids of the first ``title_size`` tokens, zeros after; unknown -> 0."""
        if isinstance(titles, str):
            raise TypeError("encode() takes a sequence of titles, not one string")
        n = self.title_size
        get = self.vocab.get
        out = np.zeros((len(titles), n), dtype=np.int64)
        for row, title in enumerate(titles):
            ids = [get(w, UNK_ID) for w in self.tokenize(title)[:n]]
            if ids:
                out[row, : len(ids)] = ids
        return out

    def item_inputs(self, titles: Sequence[str]) -> dict[str, np.ndarray]:
        """The item encoder's inputs for ``titles``: ``{"title_tokens": int64 [N, title_size]}``."""
        return {"title_tokens": self.encode(titles)}

    # ------------------------------------------------------------------ files
    def to_dict(self) -> dict:
        return {
            "type": self.type,
            "pattern": self.pattern,
            "lowercase": self.lowercase,
            "title_size": self.title_size,
            "vocab": dict(sorted(self.vocab.items(), key=lambda kv: kv[1])),
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``tokenizer.json``; ``path`` may be the file or a directory."""
        path = Path(path)
        if path.is_dir():
            path = path / "tokenizer.json"
        path.write_text(json.dumps(self.to_dict(), ensure_ascii=False), encoding="utf-8")
        return path

    @classmethod
    def from_dict(cls, spec: dict) -> "WordTokenizer":
        if spec.get("type") != cls.type:
            raise ValueError(f"not a {cls.type!r} tokenizer: type={spec.get('type')!r}")
        try:
            vocab = spec["vocab"]
            title_size = spec["title_size"]
        except KeyError as e:
            raise ValueError(f"{cls.type} tokenizer spec lacks {e.args[0]!r}") from None
        if not isinstance(vocab, dict):
            raise ValueError("tokenizer 'vocab' must be an object {word: id}")
        return cls(vocab, int(title_size), pattern=spec.get("pattern", PATTERN),
                   lowercase=bool(spec.get("lowercase", True)))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "WordTokenizer":
        return cls.from_dict(_read_json(path))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WordTokenizer) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"WordTokenizer(words={len(self.vocab)}, title_size={self.title_size})"


class HFTokenizer:
    """A Hugging Face fast tokenizer (``tokenizers``): titles -> ``input_ids``, ``attention_mask`` (int64).

    Truncates at ``title_size`` word pieces (special tokens included; kept in the file as
    ``truncation.max_length``); pads to the longest title of the call, or to ``pad_to``."""

    type = "huggingface"
    input_names = ("input_ids", "attention_mask")

    def __init__(self, spec: dict, title_size: int | None = None):
        try:
            from tokenizers import Tokenizer
        except ImportError as exc:  # the serve extra has it
            raise ValueError("a Hugging Face tokenizer.json needs the `tokenizers` package "
                             "(pip install 'recserve[serve]')") from exc
        spec = dict(spec)
        if title_size is None:
            title_size = (spec.get("truncation") or {}).get("max_length")
        if not isinstance(title_size, int) or isinstance(title_size, bool) or title_size < 2:
            raise ValueError(f"title_size (truncation.max_length) must be an integer >= 2, got {title_size!r}")
        spec["truncation"] = {"direction": "Right", "max_length": title_size, "strategy": "LongestFirst", "stride": 0}
        spec["padding"] = None
        try:
            self._tokenizer = Tokenizer.from_str(json.dumps(spec))
        except Exception as exc:  # tokenizers raises its own Exception type for a malformed file
            raise ValueError(f"not a valid Hugging Face tokenizer file ({exc})") from None
        self.spec, self.title_size = spec, title_size

    @classmethod
    def from_dict(cls, spec: dict, title_size: int | None = None) -> "HFTokenizer":
        return cls(spec, title_size)

    def to_dict(self) -> dict:
        return self.spec

    def encode(self, titles: Sequence[str], pad_to: int | None = None) -> dict[str, np.ndarray]:
        """``{"input_ids", "attention_mask"}``, int64 [N, pad_to or the longest title's length]."""
        if isinstance(titles, str):
            raise TypeError("encode() takes a sequence of titles, not one string")
        encodings = self._tokenizer.encode_batch(list(titles))
        width = pad_to or max((len(e.ids) for e in encodings), default=1)
        ids = np.zeros((len(encodings), width), dtype=np.int64)
        for row, e in enumerate(encodings):
            ids[row, : len(e.ids)] = e.ids[:width]
        mask = np.zeros_like(ids)
        for row, e in enumerate(encodings):
            mask[row, : min(len(e.ids), width)] = 1
        return {"input_ids": ids, "attention_mask": mask}

    def item_inputs(self, titles: Sequence[str]) -> dict[str, np.ndarray]:
        return self.encode(titles)

    def __repr__(self) -> str:
        return f"HFTokenizer(title_size={self.title_size})"


_TYPES = {WordTokenizer.type: WordTokenizer}


def _read_json(path: str | os.PathLike) -> dict:
    path = Path(path)
    if path.is_dir():
        path = path / "tokenizer.json"
    spec = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(spec, dict):
        raise ValueError(f"{path}: a tokenizer file must hold a JSON object")
    return spec


def load_tokenizer(path: str | os.PathLike) -> ItemInputEncoder:
    """Load a ``tokenizer.json`` (file or the directory holding it), whatever its ``"type"``."""
    return tokenizer_from_spec(_read_json(path), path)


def tokenizer_from_spec(spec: object, path: str | os.PathLike) -> ItemInputEncoder:
    """The tokenizer a parsed ``tokenizer.json`` describes (`path` names it in errors), whatever its ``"type"``."""
    if not isinstance(spec, dict):
        raise ValueError(f"{path}: a tokenizer file must hold a JSON object")
    kind = spec.get("type")
    if kind in _TYPES:
        return _TYPES[kind].from_dict(spec)
    if kind is None and "model" in spec:
        try:
            return HFTokenizer.from_dict(spec)
        except ValueError as exc:
            raise ValueError(f"{path}: Hugging Face tokenizer: {exc}") from None
    raise ValueError(f"{path}: unknown tokenizer type {kind!r}; known types: {sorted(_TYPES)}")
