"""Feedback logs made by hand for the tests, in both places the service writes them: JSON Lines files named as
the files sink names them, and a Redis stream of entries holding records (one each, or a batch a line)."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import redis

from service.feedback import records
from service.feedback.records import FILE_PREFIX, FILE_SUFFIX, STREAM_FIELD, stream_key

REDIS_URL = "redis://127.0.0.1:6379/0"
T0 = 1_733_385_600.0  # 2024-12-05 08:00:00 UTC


def write_files(folder: Path, by_process: dict[int, list[dict]], seq: int = 1) -> list[Path]:
    """One file per process id, its records in the given order, named as the files sink names them."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for pid, recs in by_process.items():
        started = datetime.fromtimestamp(min(r["ts"] for r in recs), timezone.utc).strftime("%Y%m%dT%H%M%S")
        path = folder / f"{FILE_PREFIX}{started}-{pid}-{seq:04d}{FILE_SUFFIX}"
        path.write_text("".join(json.dumps(r) + "\n" for r in recs))
        paths.append(path)
    return paths


def xadd(prefix: str, recs: list[dict], batch: int = 1) -> None:
    """The records into the stream, `batch` a entry (one line each, as service/feedback/sinks.py writes them)."""
    client = redis.Redis.from_url(REDIS_URL)
    for start in range(0, len(recs), batch):
        lines = [json.dumps(r).encode() for r in recs[start:start + batch]]
        client.xadd(stream_key(prefix), {STREAM_FIELD: b"\n".join(lines)})


def hand_made() -> list[dict]:
    """A small log of two models over two days, in ts order.

    nrms: r1 (u1) clicked N2 after 60 s and N3 after 2000 s (outside a 1800 s window); r2 (u2) clicked nothing;
    r3, the next day, by history only (user null), clicked N9 (via user u3); a shadow arm of r1 also ranked.
    N-new was added through /items (and its title then corrected). bert4rec: r4 (u1) clicked i7; u2 posted
    i1, i2 with no request id; u3 clicked i4 and i8 naming no model (bert4rec showed i8, no model i4); an event
    of another type.
    """
    t = T0
    imp = records.impression
    return [
        records.added_item("nrms", "N-new", "First\ttitle", "sports", ts=t),
        imp("r1", "u1", "nrms", "nrms", "v1", "rank", None, ["N1", "N5"], 7, ["N2", "N3", "N-new"], [0.9, 0.5, 0.1],
            ts=t + 10),
        imp("r1", "u1", "nrms", "nrms", "v2", "rank", None, ["N1", "N5"], 7, ["N3", "N2", "N-new"], [0.8, 0.4, 0.2],
            arm="b", shadow=True, ts=t + 10),
        imp("r2", "u2", "nrms", "nrms", "v1", "rank", None, ["N4"], 1, ["N4", "N6"], [0.7, 0.6], ts=t + 20),
        records.event("u1", "nrms", ["N2"], "r1", ts=t + 70),
        records.added_item("nrms", "N-new", "Better title", "sports", ts=t + 100),
        imp("r4", "u1", "bert4rec", "bert4rec", "v9", "recommend", None, ["i3", "i5"], 2, ["i7", "i8"], [2.0, 1.0],
            ts=t + 200),
        records.event("u1", "bert4rec", ["i7"], "r4", ts=t + 230),
        records.event("u2", "bert4rec", ["i1", "i2"], None, ts=t + 300),
        records.event("u3", None, ["i4", "i8"], None, ts=t + 400),
        records.event("u1", "bert4rec", ["i8"], None, kind="purchase", ts=t + 500),
        records.event("u1", "nrms", ["N3"], "r1", ts=t + 2010),
        imp("r3", None, "nrms", "nrms", "v1", "rank", None, ["N2"], 1, ["N8", "N9"], [0.3, 0.2], ts=t + 86_400),
        records.event("u3", "nrms", ["N9"], "r3", ts=t + 86_430),
    ]


def log_of_mind(data: Path, model: str = "nrms") -> list[dict]:
    """The log a service would have written for MIND data: each behaviors.tsv line an impression of its candidates
    (as /rank's answer, scores made up) and one click event of its clicked ones 30 s later; in ts order."""
    from training.data.mind import _parse_time

    out = []
    for n, line in enumerate((data / "behaviors.tsv").read_text().splitlines()):
        imp_id, user, when, history, cands = line.split("\t")
        ts = _parse_time(when).replace(tzinfo=timezone.utc).timestamp() + n / 1000  # distinct times
        shown = [c.rpartition("-")[0] for c in cands.split()]
        clicked = [c.rpartition("-")[0] for c in cands.split() if c.endswith("-1")]
        out.append(records.impression(f"q{imp_id}", user, model, "nrms", "v1", "rank", None, history.split(),
                                      len(history.split()), shown, [1.0 / (k + 1) for k in range(len(shown))], ts=ts))
        out.append(records.event(user, model, clicked, f"q{imp_id}", ts=ts + 30))
    return sorted(out, key=lambda r: r["ts"])


def log_of_atomic(inter: Path, model: str) -> list[dict]:
    """The log of a RecBole .inter's interactions as click events naming `model`, no impression answered."""
    rows = [line.split("\t") for line in inter.read_text().splitlines()[1:] if line]
    return sorted((records.event(u, model, [i], None, ts=T0 + float(t)) for u, i, _, t in rows),
                  key=lambda r: r["ts"])
