"""The feedback log's records: the one contract between the service that writes them and the tools that read
them (`recserve logs export`, `recserve evaluate`, `recserve experiments report`).

Every record is one JSON object with a `type`, the schema version `v` and `ts` (Unix seconds, float, the
service's clock when the record was made). Three types:

impression: one answer of /rank or /recommend.
    request_id  the answer's id (also its X-Request-ID header)
    user        the user id, a salted hash of it ("h:<hex>", RECSERVE_FEEDBACK_USER_SALT), or null
    model, kind, version, arm
                the served model's name, its kind (bundle.contract KINDS: "nrms", "plm_nrms", "convncf", ...),
                bundle version, and the experiment arm as "<experiment>/<arm>" ("default" outside
                experiments; docs/deploy.md, "Experiments")
    route       "rank" or "recommend"
    fallback    null, or the fallback ranking's kind when the user was cold
    history     the item ids of the history window the model saw, oldest first (empty when cold or for
                a model of user ids)
    history_len how many items the user's known history held (before the window cut it)
    items       the item ids shown, best first (rank = position + 1): /rank's ranked known candidates,
                /recommend's k results
    scores      their scores as answered, same order
    excluded    /recommend: the items it was told to leave out (the history, unless exclude_history was false,
                and `exclude`), so a replay can leave out the same; /rank: empty; null: not recorded (a
                record made by hand, or before the field existed)
    shadow      true for a shadow arm's ranking, which no user saw (service/experiments/shadow.py): it has the
                live answer's request_id, and two more fields:
    shadow_ms   shadow records only: how long the shadow arm's scoring took, milliseconds
    live_ms     shadow records only: how long the live answer's ranking took (its JSON included), milliseconds
    teams       only in an interleaved experiment's impressions (arm "<experiment>/interleaved"): the arm that
                placed each item, aligned with `items` (arm names, not "<experiment>/<arm>"); `model` and
                `version` then name both arms' (joined by "+" where they differ), `scores` are each item's
                score by its own arm, `history` is the control arm's window. Absent elsewhere (and in records
                made before the field existed): readers take a missing `teams` as not interleaved
event: a POST /users/{id}/events.
    user        as in impressions (hashed the same way, so they join)
    model       the model the client named, or null (every model that keeps histories)
    event       the event type ("click" by default)
    items       the item ids posted, oldest first
    request_id  the impression the event answers, or null (unattributed)
item: one item added or updated through POST /items.
    model, item_id, title, category (category may be null)
impressions: many impressions of one model in columns, as the recorder writes the routes' answers
    (service/feedback/columns.py, which also expands it; readers see only the impression records it holds).
    ts          the earliest of its impressions' times
    model, kind, version
                as in impression records, the same for all
    ids         the distinct item ids its lists name, once each
    request_id, at (each impression's ts), user, arm, route, fallback, history_len
                one entry per impression
    items, history, excluded
                every impression's list, concatenated, as indexes into `ids`; `items_n`, `history_n`,
                `excluded_n` say how many entries each impression has
    scores      the scores of `items`, concatenated: base64 of little-endian floats of `scores_dtype`
                ("<f4" or "<f8")

Where records live:
- Redis: one stream, `stream_key(prefix)`, each entry a single field `r` holding one or more records as JSON
  Lines (UTF-8, newline-separated, no trailing newline): a batch one process wrote at once (one XADD per
  batch costs a fifth of one per record on the serving process). Entry ids are Redis's (milliseconds of the
  Redis server's clock, at most a flush interval after the records' own `ts`), so a time range maps onto
  XRANGE bounds with a margin.
- Files: JSON Lines under a folder, `<folder>/records-<UTC yyyymmddTHHMMSS>-<pid>-<seq 4 digits>.jsonl`,
  one record per line, each process writing its own files (no interleaving between workers), in about the
  order the process made its records (a batch's "impressions" records after its other records; readers order
  by `ts`); a file is complete up to its last newline.
"""
from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from typing import Any

import orjson

SCHEMA_VERSION = 1
STREAM_FIELD = b"r"
FILE_PREFIX, FILE_SUFFIX = "records-", ".jsonl"
DEFAULT_ARM = "default"


def stream_key(prefix: str) -> str:
    """The stream of every record. One hash tag: a stream is one key, so on a cluster it lives on one node;
    give the log a Redis of its own where its traffic matters (docs/deploy.md, Feedback loop)."""
    return f"{prefix}:{{log}}:records"


def hashed_user(user_id: str | None, salt: str | None) -> str | None:
    """The user id as recorded: itself, or "h:" + 32 hex digits of sha256(salt, user id) when a salt is set."""
    if user_id is None or not salt:
        return user_id
    return "h:" + hashlib.sha256(salt.encode() + b"\x00" + user_id.encode()).hexdigest()[:32]


def impression(request_id: str, user: str | None, model: str, kind: str, version: str, route: str,
               fallback: str | None, history: Sequence[str], history_len: int, items: Sequence[str],
               scores: Any, arm: str = DEFAULT_ARM, shadow: bool = False, ts: float | None = None,
               excluded: Sequence[str] | None = None, teams: Sequence[str] | None = None) -> dict:
    """An impression record; `scores` may be a numpy array, the lists `orjson.Fragment`s (encoded already)."""
    record = {"type": "impression", "v": SCHEMA_VERSION, "ts": time.time() if ts is None else ts,
              "request_id": request_id, "user": user, "model": model, "kind": kind, "version": version, "arm": arm,
              "route": route, "fallback": fallback, "history": history, "history_len": history_len,
              "items": items, "scores": scores, "excluded": excluded, "shadow": shadow}
    if teams is not None:
        record["teams"] = teams
    return record


def event(user: str, model: str | None, items: Sequence[str], request_id: str | None, kind: str = "click",
          ts: float | None = None) -> dict:
    return {"type": "event", "v": SCHEMA_VERSION, "ts": time.time() if ts is None else ts, "user": user,
            "model": model, "event": kind, "items": list(items), "request_id": request_id}


def added_item(model: str, item_id: str, title: str, category: str | None, ts: float | None = None) -> dict:
    return {"type": "item", "v": SCHEMA_VERSION, "ts": time.time() if ts is None else ts, "model": model,
            "item_id": item_id, "title": title, "category": category}



def encode(record: dict) -> bytes:
    """A record as one JSON line: numpy scores as numbers, `orjson.Fragment`s (JSON made already) as they are."""
    return orjson.dumps(record, option=orjson.OPT_SERIALIZE_NUMPY)
