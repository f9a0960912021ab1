"""Read the feedback log back (records.py): the records whose `ts` lies in [since, until), oldest first, from a
Redis stream or a folder of JSON Lines files, a page at a time, so memory stays flat however long the log.

Time order. Records are made by many processes with their own clocks and reach the log with some delay (the
recorder writes off the hot path, in batches), so neither the stream's order nor a merge of the files is
exactly the order of `ts`. Both sources pass through `reorder`, which holds records for `SKEW_S` seconds of
log time and releases them sorted: the output is in `ts` order wherever the disorder is under that margin
(it is never more than a batch's delay on a healthy service). The same margin widens the stream's XRANGE
bounds (entry ids are the Redis server's milliseconds, not the writers' `ts`) and the file names' times.

Damaged files. A file is complete up to its last newline (records.py): text after it is a write in progress
or cut off by a crash, skipped and counted (`Reader.partial`). Any other line that is not a JSON object with
a `type` and a numeric `ts` (and the fields its type cannot do without, `REQUIRED`) is a `LogError` naming
file:line: a log that lies about itself is not guessed at.
Records of a type this version does not know are skipped and counted (`Reader.unknown`), so an older reader
works on a newer log.
"""
from __future__ import annotations

import heapq
import itertools
import orjson
import re
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

from service.feedback import columns
from service.feedback.records import FILE_PREFIX, FILE_SUFFIX, STREAM_FIELD, stream_key

TYPES = ("impression", "event", "item", "impressions")  # "impressions": many, expanded here (columns.py)
REQUIRED = {"impression": ("model", "items"), "event": ("user", "items"), "item": ("model", "item_id"),
            "impressions": ("model", "ids", "request_id")}  # non-null
SKEW_S = 60.0       # clock skew and write delay allowed between processes (see the module's docstring)
PAGE = 1000         # stream entries per XRANGE call
FILE_NAME = re.compile(re.escape(FILE_PREFIX) + r"(\d{8}T\d{6})-(\d+)-(\d+)" + re.escape(FILE_SUFFIX) + "$")
REDIS_SCHEMES = ("redis", "rediss", "unix")


class LogError(ValueError):
    """A log that cannot be read: an unreachable Redis, a missing folder, a malformed line (file:line)."""


def parse_time(text: str) -> float:
    """Unix seconds from the command line: a number, or an ISO-8601 time (UTC when it names no zone)."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"not a time: {text!r} (ISO-8601 such as 2026-12-05T06:00:00Z, or Unix seconds)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def is_redis(source: str) -> bool:
    return urlsplit(source).scheme in REDIS_SCHEMES


class Reader:
    """The records of one source. `source`: a `redis://` (`rediss://`, `unix://`) URL, whose stream is
    `stream_key(prefix)`, or a folder of record files. Counters after (or during) iteration: `partial`
    (cut-off last lines skipped) and `unknown` (records of types this version does not know)."""

    def __init__(self, source: str, prefix: str = "recserve", page: int = PAGE, skew_s: float = SKEW_S):
        self.source, self.prefix, self.page, self.skew_s = source, prefix, page, skew_s
        self.partial = self.unknown = 0
        if not is_redis(source) and not Path(source).is_dir():
            raise LogError(f"log {source}: no such folder (nor a redis:// URL)")

    def records(self, since: float | None = None, until: float | None = None) -> Iterator[dict]:
        """Records with since <= ts < until (either bound may be None), in `ts` order (see `reorder`)."""
        raw = self._stream(since, until) if is_redis(self.source) else self._files(since, until)
        for record in reorder(raw, self.skew_s):
            if (since is None or record["ts"] >= since) and (until is None or record["ts"] < until):
                yield record

    # --- Redis -------------------------------------------------------------------------------------------
    def _stream(self, since: float | None, until: float | None) -> Iterator[dict]:
        import redis

        where = redact(self.source)
        key = stream_key(self.prefix)
        try:
            client = redis.Redis.from_url(self.source, socket_timeout=30)
        except ValueError as err:
            raise LogError(f"log {where}: not a usable Redis URL ({err})") from None
        low = "-" if since is None else str(max(0, int((since - self.skew_s) * 1000)))
        high = "+" if until is None else str(int((until + self.skew_s) * 1000))
        while True:
            try:
                entries = client.xrange(key, low, high, count=self.page)
            except (redis.RedisError, ValueError) as err:
                raise LogError(f"log {where} stream {key}: {err}") from None
            for entry_id, fields in entries:
                # One record per entry, or a writer's batch of them, one per line (service/feedback/sinks.py).
                where_entry = f"{where} stream {key} entry {entry_id.decode()}"
                if STREAM_FIELD not in fields:
                    raise LogError(f"{where_entry}: no field {STREAM_FIELD.decode()!r} (not a feedback record)")
                for n, line in enumerate((fields.get(STREAM_FIELD) or b"").split(b"\n"), start=1):
                    if line.strip():
                        yield from self._parse(line, f"{where_entry} line {n}")
            if len(entries) < self.page:
                return
            low = "(" + entries[-1][0].decode()

    # --- files -------------------------------------------------------------------------------------------
    def _files(self, since: float | None, until: float | None) -> Iterator[dict]:
        files = record_files(Path(self.source))
        if until is not None:  # a file begun after `until` (less the margin) holds nothing before it
            files = [(t, p) for t, p in files if t < until + self.skew_s]
        # A process's files, one after another, are in its order; merge the processes by ts (reorder mends what
        # little disorder is left). One file a process is open at a time.
        by_process: dict[tuple[str, str], list[Path]] = {}
        for _, path in files:
            by_process.setdefault(FILE_NAME.match(path.name).group(1, 2), []).append(path)
        series = (itertools.chain.from_iterable(map(self._lines, paths)) for paths in by_process.values())
        return heapq.merge(*series, key=lambda r: r["ts"])

    def _lines(self, path: Path) -> Iterator[dict]:
        with open(path, "rb") as f:
            for lineno, line in enumerate(f, start=1):
                if not line.endswith(b"\n"):  # after the last newline: a write in progress, or cut off
                    self.partial += 1
                    return
                if line.strip():
                    yield from self._parse(line, f"{path}:{lineno}")

    def _parse(self, data: bytes, where: str) -> list[dict]:
        """The records of one line: one, none (a type this version does not know), or an "impressions"
        record's impressions."""
        try:
            record = orjson.loads(data)
        except ValueError as err:  # UnicodeDecodeError is a ValueError
            raise LogError(f"{where}: not a JSON record ({err})") from None
        if not isinstance(record, dict) or not isinstance(record.get("ts"), (int, float)) \
                or isinstance(record.get("ts"), bool) or not isinstance(record.get("type"), str):
            raise LogError(f"{where}: not a log record (expected a JSON object with a string 'type' and a "
                           "numeric 'ts')")
        if record["type"] not in TYPES:
            self.unknown += 1
            return []
        missing = [name for name in REQUIRED[record["type"]] if record.get(name) is None]
        if missing:
            raise LogError(f"{where}: {record['type']} record without {' or '.join(missing)}")
        if record["type"] != "impressions":
            return [record]
        try:
            return list(columns.expand(record))
        except (ValueError, KeyError, TypeError, IndexError) as err:  # binascii.Error is a ValueError
            raise LogError(f"{where}: impressions record whose columns do not agree ({type(err).__name__}: "
                           f"{err})") from None


def record_files(folder: Path) -> list[tuple[float, Path]]:
    """(start time of the file's process, from its name, in Unix seconds; path) of every record file, oldest
    first, a process's files in their order: none holds a record made before its time."""
    found = []
    for path in folder.iterdir():
        match = FILE_NAME.match(path.name)
        if match:
            start = datetime.strptime(match[1], "%Y%m%dT%H%M%S").replace(tzinfo=timezone.utc).timestamp()
            found.append((start, int(match[2]), int(match[3]), path))
    return [(t, p) for t, _, _, p in sorted(found)]


def reorder(records: Iterable[dict], margin_s: float) -> Iterator[dict]:
    """`records` sorted by `ts`, holding each back until a record `margin_s` later has been seen: exact where no
    record comes more than `margin_s` after one that is newer; memory: the margin's records. Ties keep their
    arrival order."""
    held: list[tuple[float, int, dict]] = []
    newest = float("-inf")
    for n, record in zip(itertools.count(), records):
        ts = record["ts"]
        newest = max(newest, ts)
        heapq.heappush(held, (ts, n, record))
        while held[0][0] < newest - margin_s:
            yield heapq.heappop(held)[2]
    while held:
        yield heapq.heappop(held)[2]


def redact(url: str) -> str:
    """A Redis URL fit for a message: any password replaced by ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(":" + parts.password + "@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()
