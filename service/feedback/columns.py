"""Many answers as one record: the recorder's encoding of the answers it takes together (an "impressions" record,
records.py) and its expansion back into one impression record per answer, which is all a reader ever sees.

Why columns: an answer's own record (its ids, history and scores as JSON) cost the serving process ~15-20 us of
Python on the event loop and as much again in socket writes: +20% CPU on the warm /rank, four times the budget
(docs/benchmarks.md, "The feedback log"). In columns, the per-answer work is a few list appends; each distinct
catalog row of the chunk is written once, as an id, and the answers' items, history windows and exclusions are
indexes into that list, one numpy array each, which orjson writes in C; the scores are one float array, written
as base64 of its bytes (JSON numbers would cost 5x the time and twice the bytes). The attribution summaries of
the same answers are made from the same id pieces.
"""
from __future__ import annotations

import base64
import itertools
from collections.abc import Iterator, Sequence

import numpy as np
import orjson

from service.feedback import records

SCORE_DTYPES = ("<f4", "<f8")  # float32 (models) or float64 (some fallbacks), as answered


def encode(answers: Sequence, positions: int, salt: str | None, logging_on: bool
           ) -> tuple[list[bytes], list[tuple[str, float, bytes]]]:
    """(log lines: one "impressions" record per model among `answers` (and per score type: float32 or 64),
    empty when the log is off; attribution entries: (request id, time, encoded `Summary` of the first
    `positions` items) per answer). `answers`: service/feedback/online.py `Answer`s."""
    by_model: dict[tuple, list] = {}
    for answer in answers:  # dtype.char: comparing the dtype with np.float64 cost ~0.5 us an answer
        by_model.setdefault((id(answer.model), answer.scores.dtype.char == "d"), []).append(answer)
    lines, shown = [], []
    for (_, float64), group in by_model.items():
        line = _encode_group(group, np.dtype("<f8") if float64 else np.dtype("<f4"), positions, salt, shown)
        if logging_on:
            lines.append(line)
    return lines, shown


def _encode_group(group: list, dtype: np.dtype, positions: int, salt: str | None, shown: list) -> bytes:
    """One model's answers whose scores all have one type, written as `dtype`."""
    model = group[0].model
    # the answers' fields as columns (tuples), transposed in C: per answer, Python touches only what has no column
    col = dict(zip(group[0]._fields, zip(*group)))
    items = [np.asarray(r, dtype=np.int64) for r in col["rows"]]
    excluded_n = list(map(len, col["excluded"]))
    excluded = [np.asarray(e, dtype=np.int64) for e, n in zip(col["excluded"], excluded_n) if n]  # /rank: none
    windows = col["window"]
    history_n = list(map(len, windows))
    n_history = sum(history_n)
    history = np.fromiter(itertools.chain.from_iterable(windows), dtype=np.int64, count=n_history)
    n_items = list(map(len, items))
    rows = np.concatenate([*items, history, *excluded])
    # each distinct row once, in row order; every list below indexes into it
    mark = np.zeros(int(rows.max(initial=0)) + 1, dtype=bool)
    mark[rows] = True
    distinct = np.flatnonzero(mark)
    slot = np.empty(len(mark), dtype=np.int32)
    slot[distinct] = np.arange(len(distinct), dtype=np.int32)
    index = slot[rows]
    pieces = model.catalog.ids_json_parts(distinct)
    n_shown = len(rows) - n_history - sum(excluded_n)
    shown_items = index[:n_shown]
    # the attribution summaries: the first `positions` items of each answer, gathered in one numpy call
    counts = np.asarray(n_items, dtype=np.int64)
    firsts = np.minimum(counts, positions)
    ends = np.cumsum(firsts)
    gather = np.arange(ends[-1]) + np.repeat(np.cumsum(counts) - counts - (ends - firsts), firsts)
    top = list(map(pieces.__getitem__, shown_items[gather].tolist()))
    heads: dict[str, bytes] = {}
    start = 0
    for request_id, ts, arm, end in zip(col["request_id"], col["ts"], col["arm"], ends.tolist()):
        head = heads.get(arm)
        if head is None:  # ["model","version","arm",[ ... ]]: attribution.Summary's encoding
            head = heads[arm] = orjson.dumps([model.name, model.version, arm])[:-1] + b",["
        shown.append((request_id, ts, head + b",".join(top[start:end]) + b"]]"))
        start = end
    scores = col["scores"]
    users = col["user_id"]
    record = {
        "type": "impressions", "v": records.SCHEMA_VERSION, "ts": min(col["ts"]),
        "model": model.name, "kind": model.bundle.kind, "version": model.version,
        "ids": orjson.Fragment(b"[" + b",".join(pieces) + b"]"),
        "request_id": col["request_id"], "at": col["ts"],
        "user": [records.hashed_user(u, salt) for u in users] if salt else users,
        "arm": col["arm"], "route": col["route"], "fallback": col["fallback"], "history_len": col["history_len"],
        "items": shown_items, "items_n": n_items,
        "scores": base64.b64encode(np.concatenate(scores).astype(dtype, copy=False).tobytes()).decode(),
        "scores_dtype": dtype.str,
        "history": index[n_shown:n_shown + n_history], "history_n": history_n,
        "excluded": index[n_shown + n_history:], "excluded_n": excluded_n,
    }
    return records.encode(record)


def expand(batch: dict) -> Iterator[dict]:
    """The impression records of an "impressions" record, in its order. Raises ValueError (or KeyError,
    TypeError, IndexError) where its columns do not agree."""
    ids = batch["ids"]
    dtype = batch["scores_dtype"]
    if dtype not in SCORE_DTYPES:
        raise ValueError(f"scores_dtype {dtype!r} is none of {SCORE_DTYPES}")
    raw = np.frombuffer(base64.b64decode(batch["scores"], validate=True), dtype=dtype)
    # as the answer wrote them: a float32's shortest decimal, read back
    scores = orjson.loads(orjson.dumps(raw.astype(np.dtype(dtype).newbyteorder("=")),
                                       option=orjson.OPT_SERIALIZE_NUMPY))
    columns = [batch[name] for name in ("request_id", "at", "user", "arm", "route", "fallback", "history_len",
                                        "items_n", "history_n", "excluded_n")]
    if len({len(c) for c in columns}) != 1:
        raise ValueError("columns of different lengths")
    counts = {name: batch[f"{name}_n"] for name in ("items", "history", "excluded")}
    for name, n in counts.items():
        if sum(n) != len(batch[name]):
            raise ValueError(f"{name}: {len(batch[name])} entries, {name}_n adds up to {sum(n)}")
    if len(scores) != len(batch["items"]):
        raise ValueError(f"{len(scores)} scores for {len(batch['items'])} items")
    item, hist, excl = 0, 0, 0
    for request_id, ts, user, arm, route, fallback, history_len, n_item, n_hist, n_excl in zip(*columns):
        yield records.impression(
            request_id, user, batch["model"], batch["kind"], batch["version"], route, fallback,
            [ids[i] for i in batch["history"][hist:hist + n_hist]], history_len,
            [ids[i] for i in batch["items"][item:item + n_item]], scores[item:item + n_item], arm, ts=ts,
            excluded=[ids[i] for i in batch["excluded"][excl:excl + n_excl]])
        item, hist, excl = item + n_item, hist + n_hist, excl + n_excl
