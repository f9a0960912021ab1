"""Files of `recserve recommend`, by suffix: users from a text file (one id per line) or a Parquet file (a
`user_id` column); records to JSON lines or, for `.parquet`, a Parquet file of the same fields. Both engines
(service/batch.py in one process, service/batch_ray.py on Ray) read and write through here, so their files
are alike. pyarrow is imported only for Parquet: text files need none."""
from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

# One row a user; a record's absent keys are nulls. `results` is empty, never null, for a user scored with nothing
# left to recommend (every item already seen), and null for an error record.
FIELDS = ("user_id", "results", "fallback", "error")
PARQUET_ROWS = 10_000  # records a row group


class BatchInputError(ValueError):
    """A users file, an output path or an installation that `recommend` cannot work with."""


def is_parquet(path: Path) -> bool:
    return path.suffix.lower() == ".parquet"


def pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401  (the submodule is not imported with the package)
    except ModuleNotFoundError as err:
        if err.name != "pyarrow":
            raise
        raise BatchInputError("Parquet files need pyarrow: pip install pyarrow (or 'recserve[ray]')") from None
    return pyarrow


def record_schema():
    """The Arrow schema of the records (the Parquet output's, and what the Ray actors return)."""
    pa = pyarrow()
    result = pa.struct([("item_id", pa.string()), ("score", pa.float64()), ("rank", pa.int32())])
    return pa.schema([("user_id", pa.string()), ("results", pa.list_(result)), ("fallback", pa.string()),
                      ("error", pa.string())])


def records_to_table(records: list[dict]):
    return pyarrow().Table.from_pylist(records, schema=record_schema())


def table_to_records(table) -> list[dict]:
    """Back to the records recommend_users yields: the null fields dropped, the keys in their order."""
    return [{k: v for k, v in row.items() if v is not None} for row in table.to_pylist()]


def read_user_ids(path: Path) -> list[str]:
    """The user ids of a text file (one a line) or of a Parquet file's `user_id` column (its only column will
    do too), in file order; blank lines and null or blank values are skipped, surrounding spaces stripped."""
    if not is_parquet(path):
        return [line.strip() for line in path.read_text().splitlines() if line.strip()]
    pa = pyarrow()
    try:
        schema = pa.parquet.read_schema(path)
    except pa.ArrowException as err:
        raise BatchInputError(f"--users {path}: not a readable Parquet file ({err})") from None
    names = schema.names
    column = "user_id" if "user_id" in names else names[0] if len(names) == 1 else None
    if column is None:
        raise BatchInputError(f"--users {path}: no 'user_id' column (columns: {', '.join(names)})")
    values = pa.parquet.read_table(path, columns=[column]).column(0)
    try:
        values = values.cast(pa.string())
    except pa.ArrowException as err:
        raise BatchInputError(f"--users {path}: column {column!r} of {values.type} is no user id ({err})") from None
    return [v.strip() for v in values.to_pylist() if v is not None and v.strip()]


class RecordWriter:
    """Write records to `path`: JSON lines (one json.dumps a record), or Parquet for a `.parquet` path, first into
    `<path>.tmp`, renamed to `path` by `commit()`; never a half-written file under the final name."""

    def __init__(self, path: Path):
        self.path, self.tmp = path, path.with_name(path.name + ".tmp")
        self.parquet = is_parquet(path)
        self.pending: list[dict] = []
        if self.parquet:
            self.out = pyarrow().parquet.ParquetWriter(self.tmp, record_schema())
        else:
            self.out = open(self.tmp, "w")

    def write(self, records: Iterable[dict]) -> None:
        if not self.parquet:
            self.out.writelines(json.dumps(r) + "\n" for r in records)
            return
        self.pending.extend(records)
        if len(self.pending) >= PARQUET_ROWS:
            self._flush()

    def _flush(self) -> None:
        if self.pending:
            self.out.write_table(records_to_table(self.pending))
            self.pending = []

    def commit(self) -> None:
        if self.parquet:
            self._flush()
        self.out.close()
        self.tmp.replace(self.path)

    def abort(self) -> None:
        self.out.close()
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, kind, *_) -> None:
        if kind is None:
            self.commit()
        else:
            self.abort()
