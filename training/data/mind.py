"""MIND news logs (``news.tsv`` + ``behaviors.tsv``) for NRMS, following Microsoft recommenders'
``mind_iterator.py``.

Formats (tab-separated, UTF-8, no header):

- ``news.tsv``: id, category, subcategory, title, abstract, url, title_entities, abstract_entities.
  Empty fields are fine. Lines with 4 to 7 columns are accepted and the missing trailing columns read as
  empty (only id/category/subcategory/title are used). Fewer than 4 or more than 8 columns, an empty id or
  a duplicate id (within one file) is a ``DataError``.
- ``behaviors.tsv``: impression id, user id, time ``M/D/YYYY h:mm:ss AM``, space-separated history
  (may be empty), space-separated ``NEWSID-LABEL`` candidates (label 0/1). Exactly 5 columns.

Blank lines are skipped. News ids in behaviors that are not in the news files are skipped (history items
and candidates alike) and counted, with one warning per behaviors file; a behaviors file none of whose
candidates is a known news (news.tsv from another download, say) is a ``DataError``.

Indices: news index 0 is ``"[PAD]"``; real news are 1..N in file order. Histories keep the file's order
(oldest first) and repeats. Impressions whose candidates were all unknown are kept with zero candidates.
"""
from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from bundle.tokenizers import WordTokenizer
from training.data.errors import DataError
from training.progress import timed

__all__ = ["News", "Impressions", "MindData", "read_news", "read_behaviors", "read_mind",
           "train_samples", "history_matrix", "click_counts", "PAD"]

log = logging.getLogger(__name__)

PAD = "[PAD]"
_NEWS_MIN_COLS, _NEWS_COLS, _BEHAVIOR_COLS = 4, 8, 5


# ============================================================================ containers
@dataclass
class News:
    ids: list[str]                 # index -> news id; ids[0] == "[PAD]"
    index: dict[str, int]          # news id -> index (>= 1)
    category: list[str]            # per index; "" at 0
    subcategory: list[str]
    title: list[str]
    abstract: list[str]
    title_tokens: np.ndarray       # int64 [len(ids), title_size]; row 0 zeros

    def __len__(self) -> int:      # rows including padding
        return len(self.ids)

    @property
    def n_news(self) -> int:       # real news, padding excluded
        return len(self.ids) - 1


@dataclass
class Impressions:
    impression_id: list[str]
    user_id: list[str]
    time: np.ndarray               # datetime64[s], naive (the file's clock)
    history_indptr: np.ndarray     # int64 [I+1]
    history_items: np.ndarray      # int64 news indices, oldest first per impression
    cand_indptr: np.ndarray        # int64 [I+1]
    cand_items: np.ndarray         # int64 news indices, in file order per impression
    cand_labels: np.ndarray        # int64 0/1, aligned with cand_items
    missing_news: int = 0          # distinct unknown news ids skipped in the file this was read from

    def __len__(self) -> int:
        return len(self.impression_id)

    def select(self, rows: np.ndarray) -> "Impressions":
        """A new Impressions holding the given rows (indices or boolean mask), in that order."""
        rows = np.asarray(rows)
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)
        h_ptr, h_items = _csr_take(self.history_indptr, self.history_items, rows)
        c_ptr, c_items = _csr_take(self.cand_indptr, self.cand_items, rows)
        _, c_labels = _csr_take(self.cand_indptr, self.cand_labels, rows)
        return Impressions(
            impression_id=[self.impression_id[i] for i in rows],
            user_id=[self.user_id[i] for i in rows],
            time=self.time[rows],
            history_indptr=h_ptr, history_items=h_items,
            cand_indptr=c_ptr, cand_items=c_items, cand_labels=c_labels,
            missing_news=self.missing_news,
        )


@dataclass
class MindData:
    news: News
    tokenizer: WordTokenizer
    train: Impressions
    valid: Impressions
    fingerprint: str               # sha256 over the files read
    missing_news: int              # distinct news ids in behaviors not in news.tsv (skipped)
    files: list[str] = field(default_factory=list)
    word_vectors: np.ndarray | None = None  # pretrained rows of the tokenizer's words, when training asks for them


# ============================================================================ reading
def _read_lines(path: Path) -> tuple[bytes, list[str]]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(path, None, "file not found") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(path, raw.count(b"\n", 0, e.start) + 1, f"not UTF-8 ({e.reason})") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = text.split("\n")
    if not text.strip():
        raise DataError(path, 1, "empty file")
    return raw, lines


def _tab_rows(lines: list[str]):
    """(1-based line number, tab-separated columns) of each non-blank line, tolerating CRLF endings."""
    for lineno, line in enumerate(lines, start=1):
        line = line.removesuffix("\r")
        if line.strip():
            yield lineno, line.split("\t")


def _parse_news(path: Path, lines: list[str]) -> list[tuple[str, str, str, str, str]]:
    rows: list[tuple[str, str, str, str, str]] = []
    first_line: dict[str, int] = {}
    for lineno, cols in _tab_rows(lines):
        n = len(cols)
        if n != _NEWS_COLS:
            if n < _NEWS_MIN_COLS or n > _NEWS_COLS:
                raise DataError(path, lineno, f"expected {_NEWS_COLS} tab-separated columns "
                                              f"(at least {_NEWS_MIN_COLS}), got {n}")
            cols = cols + [""] * (_NEWS_COLS - n)
        nid = cols[0].strip()
        if not nid:
            raise DataError(path, lineno, "empty news id")
        if nid in first_line:
            raise DataError(path, lineno, f"duplicate news id {nid!r} (first on line {first_line[nid]})")
        first_line[nid] = lineno
        rows.append((nid, cols[1], cols[2], cols[3], cols[4]))
    return rows


def _build_news(rows: list[tuple[str, str, str, str, str]], tokenizer: WordTokenizer) -> News:
    ids = [PAD] + [r[0] for r in rows]
    category = [""] + [r[1] for r in rows]
    subcategory = [""] + [r[2] for r in rows]
    title = [""] + [r[3] for r in rows]
    abstract = [""] + [r[4] for r in rows]
    tokens = tokenizer.encode(title)
    tokens[0] = 0
    return News(ids=ids, index={nid: i for i, nid in enumerate(ids) if i},
                category=category, subcategory=subcategory, title=title, abstract=abstract,
                title_tokens=tokens)


def read_news(path: str | os.PathLike, tokenizer: WordTokenizer | None = None,
              title_size: int = 30) -> tuple[News, WordTokenizer]:
    """Read ``news.tsv``. Fits a ``WordTokenizer`` on its titles unless one is given (then the given
    tokenizer's own ``title_size`` applies and ``title_size`` is ignored)."""
    path = Path(path)
    _, lines = _read_lines(path)
    rows = _parse_news(path, lines)
    if tokenizer is None:
        tokenizer = WordTokenizer.fit((r[3] for r in rows), title_size=title_size)
    return _build_news(rows, tokenizer), tokenizer


def _parse_time(s: str) -> datetime:
    # "11/13/2019 8:36:57 AM"; strptime would do, this is ~10x faster and just as strict.
    date, clock, half = s.split(" ")
    mo, d, y = date.split("/")
    h, mi, se = clock.split(":")
    if not (len(y) == 4 and 1 <= len(mo) <= 2 and 1 <= len(d) <= 2 and 1 <= len(h) <= 2
            and len(mi) == 2 and len(se) == 2):
        raise ValueError(s)
    hour = int(h)
    if not 1 <= hour <= 12 or half not in ("AM", "PM"):
        raise ValueError(s)
    hour = hour % 12 + (12 if half == "PM" else 0)
    return datetime(int(y), int(mo), int(d), hour, int(mi), int(se))


def _parse_behaviors(path: Path, lines: list[str], index: dict[str, int]):
    imp_ids: list[str] = []
    users: list[str] = []
    times: list[datetime] = []
    h_lens: list[int] = []
    c_lens: list[int] = []
    h_items: list[int] = []
    c_items: list[int] = []
    c_labels: list[int] = []
    missing: dict[str, int] = {}
    get = index.get
    for lineno, cols in _tab_rows(lines):
        if len(cols) != _BEHAVIOR_COLS:
            raise DataError(path, lineno, f"expected {_BEHAVIOR_COLS} tab-separated columns, got {len(cols)}")
        imp_id, user, ts, hist, imps = cols
        try:
            t = _parse_time(ts.strip())
        except ValueError:
            raise DataError(path, lineno, f"unparsable time {ts!r} (expected M/D/YYYY h:mm:ss AM|PM)") from None

        hist_ids = hist.split()
        h = [get(n, 0) for n in hist_ids]
        if 0 in h:
            for n, i in zip(hist_ids, h):
                if not i:
                    missing[n] = missing.get(n, 0) + 1
            h = [i for i in h if i]

        toks = imps.split()
        if not toks:
            raise DataError(path, lineno, "no impressions (expected NEWSID-LABEL tokens)")
        n_before = len(c_items)
        for tok in toks:
            nid, sep, lab = tok.rpartition("-")
            if not sep or not nid or (lab != "0" and lab != "1"):
                raise DataError(path, lineno, f"malformed impression {tok!r} (expected NEWSID-0 or NEWSID-1)")
            i = get(nid, 0)
            if i:
                c_items.append(i)
                c_labels.append(lab == "1")
            else:
                missing[nid] = missing.get(nid, 0) + 1

        imp_ids.append(imp_id)
        users.append(user)
        times.append(t)
        h_items.extend(h)
        h_lens.append(len(h))
        c_lens.append(len(c_items) - n_before)

    if imp_ids and not c_items:  # every impression would be skipped later: nothing to train on or score
        examples = ", ".join(sorted(missing)[:3])
        raise DataError(path, None, f"none of its {len(imp_ids)} impressions has a candidate news of news.tsv "
                                    f"({len(missing)} news ids it names are not there, e.g. {examples}): nothing "
                                    f"to train on or score; is news.tsv from the same MIND download as this file?")
    imps = Impressions(
        impression_id=imp_ids,
        user_id=users,
        time=np.array(times, dtype="datetime64[s]"),
        history_indptr=_indptr(h_lens),
        history_items=np.array(h_items, dtype=np.int64),
        cand_indptr=_indptr(c_lens),
        cand_items=np.array(c_items, dtype=np.int64),
        cand_labels=np.array(c_labels, dtype=np.int64),
        missing_news=len(missing),
    )
    return imps, missing


def _warn_missing(path: Path, missing: dict[str, int]) -> None:
    if missing:
        log.warning("%s: %d news ids not in news.tsv were skipped (%d occurrences in histories and "
                    "impressions), e.g. %s", path, len(missing), sum(missing.values()),
                    ", ".join(sorted(missing)[:3]))


def read_behaviors(path: str | os.PathLike, news: News) -> Impressions:
    """Read ``behaviors.tsv`` against ``news``; unknown news ids are skipped, counted, warned about once."""
    path = Path(path)
    _, lines = _read_lines(path)
    imps, missing = _parse_behaviors(path, lines, news.index)
    _warn_missing(path, missing)
    return imps


def read_mind(data_dir: str | os.PathLike, *, valid_behaviors: str | os.PathLike | None = None,
              title_size: int = 30) -> MindData:
    """Read ``data_dir/news.tsv`` and ``data_dir/behaviors.tsv``.

    Without ``valid_behaviors``: impressions of the last calendar day in behaviors.tsv are validation,
    the rest train. With it (another behaviors.tsv, e.g. MIND's dev set): the whole of behaviors.tsv is
    train; the validation news must be in ``data_dir/news.tsv`` or in a ``news.tsv`` beside
    ``valid_behaviors`` (read too; ids already seen are skipped there, other duplicates are errors).

    The tokenizer is fitted on the titles of all news read (the catalog the model will encode).
    """
    data_dir = Path(data_dir)
    files: list[tuple[str, Path]] = [("news.tsv", data_dir / "news.tsv"),
                                     ("behaviors.tsv", data_dir / "behaviors.tsv")]
    valid_path = Path(valid_behaviors) if valid_behaviors is not None else None
    if valid_path is not None:
        files.append(("valid_behaviors.tsv", valid_path))
        extra_news = valid_path.parent / "news.tsv"
        if extra_news.exists() and extra_news.resolve() != (data_dir / "news.tsv").resolve():
            files.append(("valid_news.tsv", extra_news))

    digest = hashlib.sha256()
    contents: dict[str, tuple[Path, list[str]]] = {}
    # Real MIND takes tens of seconds from here to the first batch: each step says what it is doing.
    missing = [path for _, path in files[:2] if not path.is_file()]
    if missing:  # before the log line that promises reading them
        raise DataError(missing[0], None, "file not found; a news model reads MIND-format news.tsv and behaviors.tsv "
                                          "from --data (`recserve data fetch mind-small --dest DIR` writes them)")
    with timed(log, f"reading {len(files)} MIND files from {data_dir}") as notes:
        size = 0
        for role, path in files:
            raw, lines = _read_lines(path)
            digest.update(role.encode() + b"\0" + hashlib.sha256(raw).digest())
            contents[role] = (path, lines)
            size += len(raw)
        notes.append(f"{size / 1e6:.1f} MB")

    with timed(log, "parsing news and fitting the tokenizer on their titles") as notes:
        rows = _parse_news(*contents["news.tsv"])
        if "valid_news.tsv" in contents:
            seen = {r[0] for r in rows}
            rows += [r for r in _parse_news(*contents["valid_news.tsv"]) if r[0] not in seen]
        tokenizer = WordTokenizer.fit((r[3] for r in rows), title_size=title_size)
        news = _build_news(rows, tokenizer)
        notes.append(f"{news.n_news} news, {len(tokenizer.vocab)} words")

    b_path, b_lines = contents["behaviors.tsv"]
    with timed(log, f"parsing {b_path}") as notes:
        behaviors, missing = _parse_behaviors(b_path, b_lines, news.index)
        notes.append(f"{len(behaviors)} impressions")
    _warn_missing(b_path, missing)
    if valid_path is None:
        if len(behaviors) == 0:
            raise DataError(b_path, None, "no impressions")
        day = behaviors.time.astype("datetime64[D]")
        last = day.max()
        is_valid = day == last
        if is_valid.all():
            raise DataError(b_path, None, f"all impressions are on one day ({last}); cannot split by "
                                          f"time, pass valid_behaviors")
        train, valid = behaviors.select(~is_valid), behaviors.select(is_valid)
        log.info("validating on the last day, %s: %d impressions; training on %d", last, len(valid), len(train))
        n_missing = len(missing)
    else:
        v_path, v_lines = contents["valid_behaviors.tsv"]
        with timed(log, f"parsing {v_path}") as notes:
            valid, v_missing = _parse_behaviors(v_path, v_lines, news.index)
            notes.append(f"{len(valid)} impressions")
        _warn_missing(v_path, v_missing)
        train = behaviors
        n_missing = len(missing.keys() | v_missing.keys())

    return MindData(news=news, tokenizer=tokenizer, train=train, valid=valid,
                    fingerprint=digest.hexdigest(), missing_news=n_missing,
                    files=[str(p) for _, p in files])


# ============================================================================ batches
def history_matrix(imps: Impressions, his_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per impression: ``int64 [I, his_size]`` holding the last ``his_size`` history news, left-aligned
    oldest first, zeros after; and ``int64 [I]`` lengths (0 for an empty history)."""
    return _last_k(imps.history_indptr, imps.history_items, np.arange(len(imps)), his_size)


def click_counts(imps: Impressions) -> dict[str, int]:
    """``clicks`` in total, ``usable`` (their impression has at least one non-clicked candidate: one
    training sample each) and ``skipped`` (the rest)."""
    imp_of, labels = _cand_rows(imps), imps.cand_labels.astype(bool)
    n_neg = np.bincount(imp_of[~labels], minlength=len(imps))
    clicks = int(labels.sum())
    usable = int((n_neg[imp_of[labels]] > 0).sum())
    return {"clicks": clicks, "usable": usable, "skipped": clicks - usable}


def train_samples(imps: Impressions, npratio: int, his_size: int,
                  rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One training sample per clicked candidate (NRMS's ``npratio`` softmax task).

    Returns ``history`` int64 [S, his_size] (last ``his_size`` history news, left-aligned, oldest first,
    zeros after), ``history_len`` int64 [S], ``candidates`` int64 [S, 1 + npratio] with the clicked news in
    column 0 and ``npratio`` non-clicked news of the same impression in random order (the label is
    implicitly 0). Negatives are drawn without replacement when the impression has at least ``npratio``
    of them; otherwise every one is used once and the remaining slots are drawn with replacement.
    Clicks of impressions with no non-clicked news are skipped (see ``click_counts``). Each call draws
    fresh negatives: call it once per epoch. Fully vectorised.
    """
    if npratio < 1:
        raise ValueError(f"npratio must be >= 1, got {npratio}")
    imp_of = _cand_rows(imps)
    labels = imps.cand_labels.astype(bool)

    # Non-clicked candidates grouped by impression (stable: file order within an impression).
    neg_pos = np.flatnonzero(~labels)
    neg_items = imps.cand_items[neg_pos]
    n_neg = np.bincount(imp_of[neg_pos], minlength=len(imps))
    neg_start = np.concatenate([[0], np.cumsum(n_neg)[:-1]])

    click_pos = np.flatnonzero(labels)
    s_imp = imp_of[click_pos]
    keep = n_neg[s_imp] > 0
    skipped = int((~keep).sum())
    if skipped:
        log.debug("train_samples: skipped %d clicks of impressions without non-clicked news", skipped)
    click_pos, s_imp = click_pos[keep], s_imp[keep]
    S, k = len(click_pos), npratio
    n = n_neg[s_imp]

    offsets = np.empty((S, k), dtype=np.int64)
    # (a) enough negatives: Floyd's sampling of k distinct offsets in [0, n), vectorised over rows.
    big = n >= k
    if big.any():
        nb = n[big]
        chosen = np.empty((len(nb), k), dtype=np.int64)
        for j in range(k):
            hi = nb - k + j                                  # draw t in [0, hi]
            t = np.floor(rng.random(len(nb)) * (hi + 1)).astype(np.int64)
            t = np.minimum(t, hi)
            dup = (chosen[:, :j] == t[:, None]).any(axis=1)
            chosen[:, j] = np.where(dup, hi, t)
        offsets[big] = chosen
    # (b) fewer negatives than k: each one once, the remaining slots with replacement.
    small = ~big
    if small.any():
        ns = n[small][:, None]
        slot = np.arange(k)[None, :]
        draw = np.minimum(np.floor(rng.random((len(ns), k)) * ns).astype(np.int64), ns - 1)
        offsets[small] = np.where(slot < ns, slot, draw)
    # Random column order, so neither the file order nor Floyd's bias shows.
    offsets = np.take_along_axis(offsets, np.argsort(rng.random((S, k)), axis=1), axis=1)

    candidates = np.empty((S, 1 + k), dtype=np.int64)
    candidates[:, 0] = imps.cand_items[click_pos]
    candidates[:, 1:] = neg_items[neg_start[s_imp][:, None] + offsets]
    history, history_len = _last_k(imps.history_indptr, imps.history_items, s_imp, his_size)
    return {"history": history, "history_len": history_len, "candidates": candidates}


# ============================================================================ helpers
def _indptr(lengths: list[int]) -> np.ndarray:
    out = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=out[1:])
    return out


def _cand_rows(imps: Impressions) -> np.ndarray:
    """Impression row of every candidate."""
    return np.repeat(np.arange(len(imps), dtype=np.int64), np.diff(imps.cand_indptr))


def _csr_take(indptr: np.ndarray, values: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    starts, lens = indptr[rows], indptr[rows + 1] - indptr[rows]
    new_ptr = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lens, out=new_ptr[1:])
    pos = np.repeat(starts - new_ptr[:-1], lens) + np.arange(new_ptr[-1])
    return new_ptr, values[pos]


def _last_k(indptr: np.ndarray, values: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    if k < 1:
        raise ValueError(f"his_size must be >= 1, got {k}")
    ends = indptr[rows + 1]
    lens = np.minimum(ends - indptr[rows], k)
    slot = np.arange(k)[None, :]
    real = slot < lens[:, None]
    pos = np.where(real, (ends - lens)[:, None] + slot, 0)
    out = np.where(real, values[pos] if len(values) else 0, 0).astype(np.int64)
    return out, lens.astype(np.int64)
