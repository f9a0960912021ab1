"""How fast `recserve logs export` turns a feedback log into training data, and in how much memory (issue #29).

    python bench/feedback_export.py --n 1000000 --workdir /tmp/fb-bench            # files sink
    python bench/feedback_export.py --n 1000000 --workdir /tmp/fb-bench --redis redis://127.0.0.1:6379/0

Writes `--n` synthetic impressions (`--rate` a second of log time; half /rank of a news model, half /recommend
of a sequence model; 10 items, a 20-item history, made-up scores), a click on one shown item for `--ctr` of them
5 to 120 s later, and a few added items, as `--processes` workers' JSON Lines files (records-*.jsonl, as the
files sink names them; with `--columns` the impressions in columns, as the service writes them) or, with `--redis`, into a stream under a private prefix (batches of 500 records an
entry, as the sink writes them; deleted afterwards). Then runs the export in a child process and prints
impressions/s and the child's peak RSS: the export keeps one attribution window of impressions (`--rate` x
`--window`), so its memory grows with the window's traffic, not with --n.
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from service.feedback import records  # noqa: E402
from service.feedback.records import FILE_PREFIX, FILE_SUFFIX, STREAM_FIELD, stream_key  # noqa: E402

T0 = 1_764_000_000.0


def synthetic(n: int, ctr: float, rate: float, seed: int = 0):
    """(process, record) in ts order per process: impressions, clicks, added items."""
    rng = np.random.default_rng(seed)
    pending: list[tuple[float, dict]] = []
    for k in range(n):
        ts = T0 + k / rate
        news = k % 2 == 0
        user = f"u{int(rng.integers(100_000))}"
        prefix, model = ("N", "nrms") if news else ("i", "bert4rec")
        pool = rng.integers(1, 10_000, 30)
        items, history = [f"{prefix}{i}" for i in pool[:10]], [f"{prefix}{i}" for i in pool[10:]]
        yield records.impression(f"r{k}", user, model, model, "v1", "rank" if news else "recommend", None, history,
                                 len(history), items, [1.0 - j / 10 for j in range(10)], ts=ts)
        if rng.random() < ctr:
            pending.append((ts + float(rng.uniform(5, 120)),
                            records.event(user, model, [items[int(rng.integers(10))]], f"r{k}")))
        if k % 10_000 == 0:
            yield records.added_item("nrms", f"N-new{k}", "A new story about the league", "sports", ts=ts)
        while pending and pending[0][0] <= ts:
            when, event = pending.pop(0)
            event["ts"] = when
            yield event
    for when, event in pending:
        event["ts"] = when
        yield event


class InColumns:
    """The service's way of writing impressions: a process's answers of a model taken together and written as one
    "impressions" record per `chunk` (service/feedback/columns.py). The synthetic ids are `<prefix><row>`, so a
    catalog of rows 1..9999 maps them back to rows."""

    def __init__(self, chunk: int = 500):
        from types import SimpleNamespace

        from service.catalog import Catalog

        self.chunk, self.open = chunk, {}
        self.feedback = SimpleNamespace(positions=20, salt=None, logging_on=True)
        self.models = {name: SimpleNamespace(name=name, version="v1", bundle=SimpleNamespace(kind=name),
                                             catalog=Catalog.of([f"{prefix}{i}" for i in range(1, 10_000)],
                                                                np.zeros((9_999, 1), dtype=np.float32)))
                       for name, prefix in (("nrms", "N"), ("bert4rec", "i"))}

    def add(self, process: int, record: dict) -> list[bytes]:
        """The lines to write now (a full chunk's record, or none)."""
        from service.feedback.online import Answer

        key = (process, record["model"])
        row = lambda item: int(item[1:])  # noqa: E731
        self.open.setdefault(key, []).append(Answer(
            self.feedback, self.models[record["model"]], record["route"], record["request_id"], record["user"],
            [row(i) for i in record["history"]], record["history_len"], np.asarray([row(i) for i in record["items"]]),
            np.asarray(record["scores"], dtype=np.float32), record["fallback"], np.zeros(0, dtype=np.int64),
            record["arm"], record["ts"]))
        return self.flush(key) if len(self.open[key]) >= self.chunk else []

    def flush(self, key) -> list[bytes]:
        from service.feedback import columns

        return columns.encode(self.open.pop(key), 20, None, True)[0]


def write_files(folder: Path, n: int, ctr: float, rate: float, processes: int, columns: bool) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    outs = [open(folder / f"{FILE_PREFIX}20251124T160000-{1000 + p}-0001{FILE_SUFFIX}", "wb") for p in range(processes)]
    gathering, count = (InColumns() if columns else None), 0
    for count, record in enumerate(synthetic(n, ctr, rate), start=1):
        process = count % processes
        lines = [orjson.dumps(record)] if gathering is None or record["type"] != "impression" else \
            gathering.add(process, record)
        outs[process].writelines(line + b"\n" for line in lines)
    for key in list(gathering.open if gathering else ()):
        outs[key[0]].writelines(line + b"\n" for line in gathering.flush(key))
    for f in outs:
        f.close()
    return count


def write_stream(url: str, prefix: str, n: int, ctr: float, rate: float, batch: int = 500) -> int:
    import redis

    client, key, lines, count = redis.Redis.from_url(url), stream_key(prefix), [], 0
    pipe = client.pipeline(transaction=False)
    for count, record in enumerate(synthetic(n, ctr, rate), start=1):
        lines.append(orjson.dumps(record))
        if len(lines) == batch:
            pipe.xadd(key, {STREAM_FIELD: b"\n".join(lines)})
            lines = []
            if len(pipe) >= 50:
                pipe.execute()
    if lines:
        pipe.xadd(key, {STREAM_FIELD: b"\n".join(lines)})
    pipe.execute()
    return count


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=1_000_000, help="impressions (default 1,000,000)")
    p.add_argument("--ctr", type=float, default=0.1, help="share of impressions with a click (default 0.1)")
    p.add_argument("--rate", type=float, default=200.0,
                   help="impressions a second of log time (default 200): the export holds --window seconds of them")
    p.add_argument("--window", type=float, default=900.0, help="the export's attribution window (default 900)")
    p.add_argument("--processes", type=int, default=4, help="files sink: writer processes, one file each (default 4)")
    p.add_argument("--workdir", type=Path, required=True, help="scratch folder (emptied)")
    p.add_argument("--redis", help="write the log to a stream on this Redis instead of files")
    p.add_argument("--columns", action="store_true",
                   help="files sink: impressions in columns, 500 answers of a model a record, as the service writes "
                        "them (default: one record each, as a log written before columns holds them)")
    args = p.parse_args()
    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    start = time.perf_counter()
    if args.redis:
        written, source = write_stream(args.redis, prefix, args.n, args.ctr, args.rate), args.redis
    else:
        written, source = write_files(args.workdir / "log", args.n, args.ctr, args.rate,
                                      args.processes, args.columns), str(args.workdir / "log")
    print(f"wrote {written:,} records in {time.perf_counter() - start:.1f} s to {'Redis' if args.redis else source}")
    command = [sys.executable, "-m", "recserve.cli", "logs", "export", "--source", source, "--prefix", prefix,
               "--out", str(args.workdir / "out"), "--window", str(args.window)]
    start = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
    finally:
        if args.redis:
            import redis

            redis.Redis.from_url(args.redis).delete(stream_key(prefix))
    seconds = time.perf_counter() - start
    if done.returncode:
        sys.exit(f"export failed ({done.returncode}): {done.stderr.strip()}")
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(done.stdout.strip()[:200])
    print(f"export: {args.n:,} impressions in {seconds:.1f} s = {args.n / seconds:,.0f} impressions/s; "
          f"peak RSS {peak_mb:.0f} MB (a window holds {min(args.n, args.rate * args.window):,.0f} impressions)")


if __name__ == "__main__":
    main()
