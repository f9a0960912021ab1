"""`recserve logs export`: the feedback log as training data, one folder per model, ready for `recserve train`.

Into an empty `--out` folder:
- `<model>/behaviors.tsv` for each news model (kind nrms, plm_nrms): one MIND line per impression a user saw
  that got at least one attributed click (as in MIND, whose every impression has one): request id, user,
  time in UTC as MIND writes it, the logged history window, and the shown items labelled 1 if clicked.
- `<model>/news.tsv` beside it: the news rows `--news MODEL=FILE` gives (the news.tsv the bundle was trained
  on: behaviors.tsv names the bundle's own items, and NRMS trains only on news it has titles for), then the
  items added through /items (the log's item records; an added id replaces the given file's row). Items added
  before `--since` are not in the range read: pass an earlier export's news.tsv as `--news` to keep them.
  The export warns when behaviors.tsv names items news.tsv lacks (training would skip them).
- `<model>/<model>.inter` for each interaction model: a RecBole atomic file (user_id, item_id, timestamp) of
  the click events, attributed or not, that name the model, or name none (an event for every model) and click
  an item the model knows, as far as the log tells (it showed it, saw it in a history, or has it from a click
  naming it or from --merge-inter): the service, too, keeps a click only in the models that know the item, and
  a news click must not become an item of ConvNCF. ConvNCF keeps no histories, so its clicks are posted naming
  no model. `--merge-inter MODEL=FILE` puts an earlier .inter's rows first (its user_id, item_id and timestamp
  columns), so one training run sees old and new data. GRU4RecF trains on item features
  (`--features`, default class) from `<model>.item`: copy the original .item file into the folder.
- `impressions.parquet` (every impression, shadow ones included, with its attributed clicks) and
  `events.parquet` (every event, with whether it was attributed), written a row group at a time.

`recserve train` splits MIND data by day (the last day validates): a range of one day needs `--valid-behaviors`.
Users are as logged: with RECSERVE_FEEDBACK_USER_SALT set they are hashes, which a model of user ids (ConvNCF)
then learns instead of the ids clients send.

Memory: one attribution window of impressions (service/feedback/join.py; their JSON, some 0.5 to 1 KB each),
the distinct item ids each model's files name, and a row group per Parquet table; not the log.
"""
from __future__ import annotations

import re
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO

from service.batch_io import PARQUET_ROWS, pyarrow
from service.feedback.join import CLICK, DEFAULT_WINDOW_S, JoinCounts, join

NEWS_KINDS = ("nrms", "plm_nrms")
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # a model's name becomes a folder of --out
INTER_HEADER = "user_id:token\titem_id:token\ttimestamp:float\n"
UNSAFE = re.compile(r"[\t\r\n]")


class ExportError(ValueError):
    """An output folder or an input file that the export cannot use."""


def mind_time(ts: float) -> str:
    """Unix seconds as MIND writes times, in UTC: 11/13/2019 8:36:57 AM."""
    t = datetime.fromtimestamp(ts, timezone.utc)
    return f"{t.month}/{t.day}/{t.year} {(t.hour + 11) % 12 + 1}:{t.minute:02d}:{t.second:02d} " \
           f"{'AM' if t.hour < 12 else 'PM'}"


def ids(values: Iterable[str]) -> list[str]:
    """Item ids fit for a space-separated field: those holding whitespace cannot be written and are left out."""
    return [v for v in values if v and not any(c.isspace() for c in v)]


def field_text(value: str | None) -> str:
    """A tab-separated field's text: tabs and line breaks become spaces."""
    return UNSAFE.sub(" ", value or "")


@dataclass
class Model:
    """What the export writes for one model."""

    folder: Path
    kind: str | None = None
    behaviors: IO[str] | None = None
    inter: IO[str] | None = None
    named: set[str] = field(default_factory=set)   # item ids behaviors.tsv names
    known: set[str] = field(default_factory=set)   # item ids an interaction model showed, saw or was given
    added: dict[str, tuple[str, str]] = field(default_factory=dict)  # item id -> (title, category)
    rows: int = 0
    warnings: list[str] = field(default_factory=list)


class ParquetRows:
    """Rows (dicts) to a Parquet file, a row group of PARQUET_ROWS at a time."""

    def __init__(self, path: Path, columns: list[tuple[str, object]]):
        pa = pyarrow()
        self.schema = pa.schema(columns)
        self.writer, self.pending, self.rows = pa.parquet.ParquetWriter(path, self.schema), [], 0

    def add(self, row: dict) -> None:
        self.pending.append(row)
        if len(self.pending) >= PARQUET_ROWS:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.writer.write_table(pyarrow().Table.from_pylist(self.pending, schema=self.schema))
            self.rows += len(self.pending)
            self.pending = []

    def close(self) -> None:
        self.flush()
        self.writer.close()


def parquet_columns() -> tuple[list, list]:
    pa = pyarrow()
    s, strings = pa.string(), pa.list_(pa.string())
    impressions = [("ts", pa.float64()), ("request_id", s), ("user", s), ("model", s), ("kind", s), ("version", s),
                   ("arm", s), ("route", s), ("fallback", s), ("history", strings), ("history_len", pa.int64()),
                   ("items", strings), ("scores", pa.list_(pa.float64())), ("shadow", pa.bool_()),
                   ("clicked", strings)]
    events = [("ts", pa.float64()), ("user", s), ("model", s), ("event", s), ("items", strings),
              ("request_id", s), ("attributed", pa.bool_())]
    return impressions, events


def parse_pairs(values: Iterable[str], option: str) -> dict[str, Path]:
    """MODEL=FILE options as {model: path}; the file must exist."""
    out = {}
    for value in values:
        model, sep, path = value.partition("=")
        if not sep or not model or not path:
            raise ExportError(f"{option} {value!r}: expected MODEL=FILE")
        if not Path(path).is_file():
            raise ExportError(f"{option} {value}: no such file {path}")
        out[model] = Path(path)
    return out


def export(records: Iterable[dict], out: Path, window_s: float = DEFAULT_WINDOW_S,
           news: dict[str, Path] | None = None, merge_inter: dict[str, Path] | None = None,
           click_types: Iterable[str] = (CLICK,)) -> dict:
    """Write the training data of `records` (in ts order, as `Reader.records` gives them) into `out`, which must
    be empty or absent; on an error it is left empty again. Returns counts and the files written (`summary`)."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ExportError(f"--out {out}: not an empty folder (the export never mixes with older files)")
    news, merge_inter, click_types = news or {}, merge_inter or {}, frozenset(click_types)
    out.mkdir(parents=True, exist_ok=True)
    models: dict[str, Model] = {}
    counts = JoinCounts()
    columns = parquet_columns()
    impressions = ParquetRows(out / "impressions.parquet", columns[0])
    events = ParquetRows(out / "events.parquet", columns[1])
    every_model = open(out / ".every-model.inter.tmp", "w")  # rows of events that name no model, shared at the end

    def model(name: str) -> Model:
        if name not in models:
            if not MODEL_NAME.fullmatch(name):
                raise ExportError(f"model name {name!r} in the log cannot name a folder (letters, digits, . _ -)")
            models[name] = Model(out / name)
            models[name].folder.mkdir(exist_ok=True)
        return models[name]

    try:
        for name, path in merge_inter.items():
            _inter(model(name), name, path)
        for joined in join(records, window_s, click_types, counts):
            r = joined.record
            if joined.type == "impression":
                shown = joined.shown
                impressions.add({**{k: r.get(k) for k in impressions.schema.names}, "clicked": shown.clicked})
                m = model(r["model"])
                m.kind = r.get("kind")
                if m.kind in NEWS_KINDS:
                    if shown.clicked and not r.get("shadow"):
                        _behavior(m, r, set(shown.clicked))
                else:
                    m.known.update(r.get("items") or (), r.get("history") or ())
            elif joined.type == "event":
                events.add({**{k: r.get(k) for k in events.schema.names}, "attributed": joined.attributed})
                if r.get("event", CLICK) in click_types:
                    user, ts = field_text(r["user"]), repr(float(r["ts"]))
                    lines = "".join(f"{user}\t{i}\t{ts}\n" for i in ids(r.get("items") or ()))
                    if r.get("model") is None:
                        every_model.write(lines)
                    else:
                        m = model(r["model"])
                        m.known.update(r.get("items") or ())
                        _inter(m, r["model"]).write(lines)
            elif joined.type == "item":
                model(r["model"]).added[r["item_id"]] = (field_text(r.get("title")), field_text(r.get("category")))
    except BaseException:  # a bad record, input file or source: no half-written export (--out was empty)
        for handle in (every_model, impressions.writer, events.writer,
                       *(h for m in models.values() for h in (m.behaviors, m.inter) if h is not None)):
            handle.close()
        for path in out.iterdir():
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
        raise
    impressions.close()
    events.close()
    every_model.close()
    written = _finish(out, models, news)
    (out / ".every-model.inter.tmp").unlink()
    written += [out / "impressions.parquet", out / "events.parquet"]
    return {"counts": counts, "written": written, "rows": impressions.rows,
            "warnings": [w for m in models.values() for w in m.warnings]}


def _behavior(m: Model, r: dict, clicked: set[str]) -> None:
    if m.behaviors is None:
        m.behaviors = open(m.folder / "behaviors.tsv", "w", encoding="utf-8")
    history, shown = ids(r.get("history") or ()), ids(r.get("items") or ())
    m.named.update(history, shown)
    labels = " ".join(f"{i}-{int(i in clicked)}" for i in shown)
    m.behaviors.write(f"{field_text(r.get('request_id'))}\t{field_text(r.get('user'))}\t{mind_time(r['ts'])}\t"
                      f"{' '.join(history)}\t{labels}\n")
    m.rows += 1


def _inter(m: Model, name: str, earlier: Path | None = None) -> IO[str]:
    """The model's .inter, opened on first use (with the header, then `earlier`'s rows)."""
    if m.inter is None:
        m.inter = open(m.folder / f"{name}.inter", "w", encoding="utf-8")
        m.inter.write(INTER_HEADER)
    if earlier is not None:
        for line in earlier_rows(earlier):
            m.known.add(line.split("\t", 2)[1])
            m.inter.write(line)
    return m.inter


def earlier_rows(path: Path) -> Iterator[str]:
    """An earlier .inter's user_id, item_id and timestamp columns, as rows of ours."""
    with open(path, encoding="utf-8-sig") as f:
        header = f.readline().rstrip("\r\n").split("\t")
        names = [c.rpartition(":")[0] for c in header]
        try:
            where = [names.index(n) for n in ("user_id", "item_id", "timestamp")]
        except ValueError:
            raise ExportError(f"--merge-inter {path}: the header needs user_id, item_id and timestamp columns "
                              f"(it has {', '.join(header)})") from None
        for lineno, line in enumerate(f, start=2):
            cols = line.rstrip("\r\n").split("\t")
            if len(cols) == len(header):
                yield "\t".join(cols[i] for i in where) + "\n"
            elif line.strip():
                raise ExportError(f"--merge-inter {path}:{lineno}: expected {len(header)} tab-separated fields")


def _finish(out: Path, models: dict[str, Model], news: dict[str, Path]) -> list[Path]:
    """Close the per-model files: news.tsv of news models; the rows of clicks naming no model into the .inter of
    each interaction model that knows the item (as the service stores a click only in the models that know it;
    what a model knows, the log says: the items it showed or saw in histories, clicks naming it, --merge-inter)."""
    written: list[Path] = []
    users: set[str] = set()
    for name, m in models.items():
        if m.behaviors is not None:
            m.behaviors.close()
            written.append(m.folder / "behaviors.tsv")
        if m.kind in NEWS_KINDS or m.added or name in news:
            written.append(_news(m, news.get(name)))
            if m.inter is not None:  # clicks naming a news model: its labels come from behaviors.tsv
                m.inter.close()
                (m.folder / f"{name}.inter").unlink()
                m.inter = None
            continue
        if m.kind is not None or m.inter is not None:
            inter = _inter(m, name)
            with open(out / ".every-model.inter.tmp", encoding="utf-8") as shared:
                inter.writelines(line for line in shared if line.split("\t", 2)[1] in m.known)
            inter.close()
            written.append(m.folder / f"{name}.inter")
            users.add(name)
    known = set().union(*(models[name].known for name in users))
    with open(out / ".every-model.inter.tmp", encoding="utf-8") as shared:
        left = sum(1 for line in shared if line.split("\t", 2)[1] not in known)
    if left and users:
        models[min(users)].warnings.append(
            f"{left} clicks naming no model were on items no interaction model showed, saw or was given: left "
            "out of every .inter")
    for name, m in models.items():
        if not any(m.folder.iterdir()):
            m.folder.rmdir()
    return written


def _news(m: Model, given: Path | None) -> Path:
    """news.tsv: the given file's rows (less ids added since), then the added items; warns of missing ids."""
    path = m.folder / "news.tsv"
    have: set[str] = set()
    with open(path, "w", encoding="utf-8") as f:
        if given is not None:
            with open(given, encoding="utf-8-sig") as rows:
                for line in rows:
                    item = line.split("\t", 1)[0].strip()
                    if item and item not in m.added:
                        have.add(item)
                        f.write(line if line.endswith("\n") else line + "\n")
        for item, (title, category) in m.added.items():
            f.write(f"{item}\t{category}\t\t{title}\t\t\t\t\n")
    missing = m.named - have - m.added.keys()
    if missing:
        m.warnings.append(f"{path}: {len(missing)} item ids of behaviors.tsv are in neither --news nor the added "
                          f"items, e.g. {', '.join(sorted(missing)[:3])}; training skips them (pass --news "
                          f"{m.folder.name}=<the news.tsv the bundle was trained on>)")
    return path


def summary(result: dict, partial: int = 0) -> str:
    """The export's one-line report."""
    c = result["counts"]
    skipped = f", {partial} cut-off lines skipped" if partial else ""
    return (f"{c.impressions} impressions, {c.events} events ({c.attributed} attributed), {c.items} added items"
            f"{skipped}: wrote {', '.join(str(p) for p in result['written'])}")
