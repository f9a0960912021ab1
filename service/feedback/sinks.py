"""Where the feedback log's records go: one small interface (`Sink`), so that a Kafka or NATS sink can be added
without touching the routes or the recorder. A sink is called from the recorder's one I/O thread only.

- `RedisStreamSink`: one XADD per batch to the stream of `records.stream_key`, trimmed by length and age.
- `FileSink`: JSON Lines files in a folder, one series per process, rotated by size, old files removed.
"""
from __future__ import annotations

import os
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol

from service.cache import RedisStore
from service.feedback.records import FILE_PREFIX, FILE_SUFFIX, STREAM_FIELD


class Sink(Protocol):
    def write(self, lines: Sequence[bytes]) -> None:
        """Store `lines` (encoded records, no newlines), all or nothing as far as the sink allows; raise when
        they cannot be stored (the recorder counts them as dropped)."""

    def close(self) -> None:
        """Release what the sink holds; called once, after the last write."""


class RedisStreamSink:
    """XADD of one entry per batch (field `r`: the records as JSON Lines), with MAXLEN ~ `max_entries` and
    MINID ~ now - `retention_s`: Redis trims whole macro nodes, so the stream stays within both bounds give or
    take a node (~100 entries). Entry ids come from the Redis server's clock."""

    def __init__(self, store: RedisStore, key: str, max_entries: int, retention_s: int):
        self.store, self.key = store, key  # the store builds its client on first use
        self.max_entries, self.retention_s = max_entries, retention_s

    def write(self, lines: Sequence[bytes]) -> None:
        # MINID and MAXLEN cannot both go in one XADD: the length bound goes with the XADD, the age bound in an
        # XTRIM of the same round trip.
        oldest_ms = int((time.time() - self.retention_s) * 1000)
        pipe = self.store.client.pipeline(transaction=False)
        pipe.xadd(self.key, {STREAM_FIELD: b"\n".join(lines)}, maxlen=self.max_entries, approximate=True)
        pipe.xtrim(self.key, minid=oldest_ms, approximate=True)
        pipe.execute()

    def close(self) -> None:
        """Nothing to release: the store's connection pool closes with the process."""


class FileSink:
    """`<folder>/records-<UTC start>-<pid>-<seq>.jsonl`, appended in batches and flushed after each, a new file
    past `max_bytes`; files (any process's) last modified more than `retention_s` ago are removed at each
    rotation and at start. Several workers share a folder safely: each writes only its own files."""

    def __init__(self, folder: Path, max_bytes: int, retention_s: int):
        self.folder, self.max_bytes, self.retention_s = Path(folder), max_bytes, retention_s
        self.folder.mkdir(parents=True, exist_ok=True)
        self.started = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
        self.seq, self.file, self.size = 0, None, 0
        self._remove_old()

    def write(self, lines: Sequence[bytes]) -> None:
        if self.file is None or self.size >= self.max_bytes:
            self._rotate()
        data = b"\n".join(lines) + b"\n"
        self.file.write(data)
        self.file.flush()
        self.size += len(data)

    def _rotate(self) -> None:
        if self.file is not None:
            self.file.close()
        self.seq += 1
        name = f"{FILE_PREFIX}{self.started}-{os.getpid()}-{self.seq:04d}{FILE_SUFFIX}"
        self.file, self.size = open(self.folder / name, "ab"), 0
        self._remove_old()

    def _remove_old(self) -> None:
        cutoff = time.time() - self.retention_s
        for path in self.folder.glob(f"{FILE_PREFIX}*{FILE_SUFFIX}"):
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
            except FileNotFoundError:  # another worker removed it first
                pass

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
