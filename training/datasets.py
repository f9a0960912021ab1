"""The real datasets `recserve data fetch` knows (``DATASETS``), the converters that lay each one out for
`recserve train`, and ``fetch(name, dest)``, which runs training.download's engine for one of them. (The
readers of the laid-out files are training.data's.)

Standard library only (no torch): it runs in any image.

Datasets:

- ``ml-100k``, ``ml-1m``: MovieLens from GroupLens, converted to RecBole atomic files in DIR:
  ``<name>.inter`` (``user_id:token item_id:token rating:float timestamp:float``), ``<name>.item``
  (``item_id:token movie_title:token_seq release_year:token class:token_seq``) and ``<name>.user``.
  Train with ``recserve train --model bert4rec --data DIR``.
- ``mind-small``, ``mind-demo``: MIND (Microsoft News Dataset), train and dev archives unpacked into
  ``DIR/train/`` and ``DIR/valid/`` (``news.tsv``, ``behaviors.tsv`` and the entity vectors), with a
  README.txt. Train with ``recserve train --model nrms --data DIR/train --valid-behaviors DIR/valid/behaviors.tsv``.
  Their archives have no citable published sha256 (see ``_MIND_NOTE``): only their size is pinned.
"""
from __future__ import annotations

import io
import re
import shutil
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from training.download import CHUNK, Archive, FetchError, download_and_build, resolve_archives


@dataclass(frozen=True)
class Dataset:
    name: str
    kind: str                      # "movielens-100k" | "movielens-1m" | "mind"
    archives: tuple[Archive, ...]  # mind: (train, dev)
    description: str
    terms: str                     # the publisher's terms of use


_GROUPLENS = "https://files.grouplens.org/datasets/movielens/"
# sha256 and size: TensorFlow Datasets' recorded checksums for these exact URLs,
# github.com/tensorflow/datasets, tensorflow_datasets/url_checksums/movielens.txt.
# md5: GroupLens's own published ml-100k.zip.md5 / ml-1m.zip.md5 (the same values are pinned by
# sisinflab/DataRec, datarec/datasets/movielens/movielens100k.py and movielens1m.py).
_TFDS = "TensorFlow Datasets url_checksums/movielens.txt (sha256, size); GroupLens <file>.md5 (md5)"

_MIND_NOTE = (
    "Microsoft publishes no checksum for the MIND archives. The size is the Content-Length pinned by "
    "recommenders-team/recommenders tests/data_validation/recommenders/datasets/test_mind.py (the same for "
    "the Azure host and the Hugging Face mirror). The ETags there are Azure change tags or Hugging Face "
    "CDN tags, not content hashes, and the only sha256 values found are a third party's, unconfirmed, so "
    "no sha256 is pinned: fetch checks the size, prints the computed sha256 and says how to pin it."
)
# The host Microsoft Recommenders published (recodatasets.z20.web.core.windows.net) stopped resolving
# in 2026 (recommenders-team/recommenders issue #2277); the Recommenders team mirrors the same archives
# at huggingface.co/datasets/Recommenders/MIND, tried second.
_MIND_HOSTS = ("https://recodatasets.z20.web.core.windows.net/newsrec/",
               "https://huggingface.co/datasets/Recommenders/MIND/resolve/main/")


def _mind_archive(filename: str, size: int) -> Archive:
    return Archive(filename, tuple(h + filename for h in _MIND_HOSTS), None, size, _MIND_NOTE)


_MOVIELENS_TERMS = "GroupLens MovieLens terms (README in the archive): research use, no redistribution"
_MIND_TERMS = "Microsoft Research License Terms for MIND (https://msnews.github.io): research use"

DATASETS: dict[str, Dataset] = {
    "ml-100k": Dataset(
        "ml-100k", "movielens-100k",
        (Archive("ml-100k.zip", (_GROUPLENS + "ml-100k.zip",),
                 "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229", 4924029, _TFDS,
                 md5="0e33842e24a9c977be4e0107933c0723"),),
        "MovieLens 100K: 100,000 ratings, 943 users, 1,682 movies", _MOVIELENS_TERMS),
    "ml-1m": Dataset(
        "ml-1m", "movielens-1m",
        (Archive("ml-1m.zip", (_GROUPLENS + "ml-1m.zip",),
                 "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20", 5917549, _TFDS,
                 md5="c4d9eecfca2ab87c1945afe126590906"),),
        "MovieLens 1M: 1,000,209 ratings, 6,040 users, 3,706 movies", _MOVIELENS_TERMS),
    "mind-small": Dataset(
        "mind-small", "mind",
        (_mind_archive("MINDsmall_train.zip", 52994575), _mind_archive("MINDsmall_dev.zip", 30948560)),
        "MIND-small: 50,000 users' impression logs, train and dev weeks", _MIND_TERMS),
    "mind-demo": Dataset(
        "mind-demo", "mind",
        (_mind_archive("MINDdemo_train.zip", 17372879), _mind_archive("MINDdemo_dev.zip", 10080022)),
        "MIND-demo: 5,000 users sampled from MIND-small, for quick runs", _MIND_TERMS),
}


# --- the entry point --------------------------------------------------------------------------------------

def fetch(name: str, dest: str | Path, *, base_url: str | None = None, progress: bool = True,
          sha256: Mapping[str, str] | None = None, require_sha256: bool = False, overwrite: bool = False,
          datasets: Mapping[str, Dataset] | None = None, out: TextIO | None = None) -> Path:
    """Download dataset ``name`` into the folder ``dest`` and return ``dest``.

    base_url: fetch every archive from ``<base_url>/<archive file name>`` instead of the official URLs.
    progress: print a progress line per archive (to ``out``, default stderr).
    sha256: ``{archive file name: hex}`` pins overriding or completing the table's.
    require_sha256: refuse an archive with no pinned sha256 instead of warning.
    overwrite: replace a dataset already in ``dest`` (swapped only once the new one is complete).
    datasets: the table to use instead of ``DATASETS`` (tests).
    """
    table = DATASETS if datasets is None else datasets
    if name not in table:
        raise FetchError(f"unknown dataset {name!r}; choose one of {', '.join(sorted(table))}")
    ds = table[name]
    archives = resolve_archives(ds.name, ds.archives, base_url, sha256 or {})
    return download_and_build(
        name, archives, dest, lambda files, tmp, final: _BUILDERS[ds.kind](ds, files, tmp, final),
        about={"dataset": ds.name, "description": ds.description, "terms": ds.terms},
        progress=progress, require_sha256=require_sha256, overwrite=overwrite, out=out)


# --- zip helpers ------------------------------------------------------------------------------------------

def _members(z: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    """Regular files by base name (the archives nest them under a folder, or not)."""
    found: dict[str, zipfile.ZipInfo] = {}
    for info in z.infolist():
        base = info.filename.replace("\\", "/").rsplit("/", 1)[-1]
        if not info.is_dir() and base and not base.startswith("."):
            found.setdefault(base, info)
    return found


def _need(z: zipfile.ZipFile, members: dict[str, zipfile.ZipInfo], names: tuple[str, ...], label: str):
    missing = [n for n in names if n not in members]
    if missing:
        raise FetchError(f"{label}: the archive has no {', '.join(missing)} (found: "
                         f"{', '.join(sorted(members)[:12]) or 'nothing'})")


def _lines(z: zipfile.ZipFile, info: zipfile.ZipInfo, encoding: str) -> Iterator[tuple[int, str]]:
    with z.open(info) as raw:
        for number, line in enumerate(io.TextIOWrapper(raw, encoding=encoding, newline=""), 1):
            line = line.rstrip("\r\n")
            if line.strip():
                yield number, line


# --- MovieLens -> RecBole atomic files --------------------------------------------------------------------

INTER_HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float"
ITEM_HEADER = "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq"
USER_HEADER = "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token"
_YEAR = re.compile(r"\((\d{4})\)")


def split_title(raw: str, release_date: str = "") -> tuple[str, str]:
    """``"Toy Story (1995)"`` -> ``("Toy Story", "1995")``: the year is the last ``(YYYY)`` of the title
    (RecBole's conversion takes it from the title too), else the release date's year, else empty. Other
    parentheses stay: ``"Seven (Se7en) (1995)"`` -> ``("Seven (Se7en)", "1995")``."""
    title = " ".join(raw.split())
    found = list(_YEAR.finditer(title))
    if found:
        m = found[-1]
        return " ".join((title[: m.start()] + title[m.end():]).split()), m.group(1)
    date_year = re.search(r"(\d{4})\s*$", release_date.strip())
    return title, date_year.group(1) if date_year else ""


def genre_token(name: str) -> str:
    """A genre as one token_seq token: inner spaces become underscores (``Film-Noir``, ``Children's`` stay)."""
    return "_".join(name.split())


def _field(value: str) -> str:
    """No tab or newline may survive inside an atomic-file field."""
    return " ".join(value.replace("\t", " ").split())


def _bad(label: str, number: int, problem: str) -> FetchError:
    return FetchError(f"{label}:{number}: {problem}")


def _write_rows(path: Path, header: str, rows) -> int:
    n = 0
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(header + "\n")
        for row in rows:
            f.write("\t".join(row) + "\n")
            n += 1
    return n


def _ratings(z, info, sep: str, label: str):
    for number, line in _lines(z, info, "latin-1"):
        parts = line.split(sep)
        if len(parts) != 4 or not all(p.strip().lstrip("-").replace(".", "", 1).isdigit() for p in parts):
            raise _bad(label, number, f"expected user{sep}item{sep}rating{sep}timestamp, got {line[:80]!r}")
        yield [p.strip() for p in parts]


def _build_ml100k(ds: Dataset, files: dict[str, Path], tmp: Path, dest: Path) -> None:
    with zipfile.ZipFile(files[ds.archives[0].filename]) as z:
        m = _members(z)
        _need(z, m, ("u.data", "u.item", "u.genre"), ds.archives[0].filename)
        genres: dict[int, str] = {}
        for number, line in _lines(z, m["u.genre"], "latin-1"):
            name, _, index = line.rpartition("|")
            if not name or not index.strip().isdigit():
                raise _bad("u.genre", number, f"expected name|index, got {line!r}")
            genres[int(index)] = genre_token(name)
        flags = [genres.get(i, f"genre{i}") for i in range(max(genres, default=-1) + 1)]

        def items():
            for number, line in _lines(z, m["u.item"], "latin-1"):
                parts = line.split("|")
                if len(parts) != 5 + len(flags) or not parts[0].strip().isdigit():
                    raise _bad("u.item", number, f"expected id|title|release date|video release date|IMDb URL "
                                                 f"and {len(flags)} genre flags, got {len(parts)} fields")
                title, year = split_title(parts[1], parts[2])
                classes = [g for g, flag in zip(flags, parts[5:]) if flag.strip() == "1"]
                yield [parts[0].strip(), _field(title), year, " ".join(classes)]

        _write_rows(tmp / f"{ds.name}.inter", INTER_HEADER, _ratings(z, m["u.data"], "\t", "u.data"))
        _write_rows(tmp / f"{ds.name}.item", ITEM_HEADER, items())
        if "u.user" in m:   # id|age|gender|occupation|zip
            rows = ([_field(p) for p in line.split("|")] for _, line in _lines(z, m["u.user"], "latin-1"))
            _write_rows(tmp / f"{ds.name}.user", USER_HEADER, (r for r in rows if len(r) == 5))
        _movielens_readme(z, m, ds, tmp, dest)


def _build_ml1m(ds: Dataset, files: dict[str, Path], tmp: Path, dest: Path) -> None:
    with zipfile.ZipFile(files[ds.archives[0].filename]) as z:
        m = _members(z)
        _need(z, m, ("ratings.dat", "movies.dat"), ds.archives[0].filename)

        def items():
            for number, line in _lines(z, m["movies.dat"], "latin-1"):
                parts = line.split("::")
                if len(parts) != 3 or not parts[0].strip().isdigit():
                    raise _bad("movies.dat", number, f"expected MovieID::Title::Genres, got {line[:80]!r}")
                title, year = split_title(parts[1])
                classes = [genre_token(g) for g in parts[2].split("|") if g.strip()]
                yield [parts[0].strip(), _field(title), year, " ".join(classes)]

        _write_rows(tmp / f"{ds.name}.inter", INTER_HEADER, _ratings(z, m["ratings.dat"], "::", "ratings.dat"))
        _write_rows(tmp / f"{ds.name}.item", ITEM_HEADER, items())
        if "users.dat" in m:  # UserID::Gender::Age::Occupation::Zip-code -> RecBole's column order
            def users():
                for _, line in _lines(z, m["users.dat"], "latin-1"):
                    p = [_field(x) for x in line.split("::")]
                    if len(p) == 5:
                        yield [p[0], p[2], p[1], p[3], p[4]]
            _write_rows(tmp / f"{ds.name}.user", USER_HEADER, users())
        _movielens_readme(z, m, ds, tmp, dest)


def _movielens_readme(z, m, ds: Dataset, tmp: Path, dest: Path) -> None:
    if "README" in m:
        (tmp / "README.grouplens.txt").write_bytes(z.read(m["README"]))
    (tmp / "README.txt").write_text(
        f"{ds.description}, converted to RecBole atomic files by `recserve data fetch {ds.name}`.\n"
        f"Terms: {ds.terms} (see README.grouplens.txt).\n\n"
        f"Train, for example:\n"
        f"  recserve train --model bert4rec --data {dest}\n"
        f"  recserve train --model gru4recf --data {dest} --features class\n", encoding="utf-8")


# --- MIND -------------------------------------------------------------------------------------------------

MIND_FILES = ("news.tsv", "behaviors.tsv")
MIND_EXTRAS = ("entity_embedding.vec", "relation_embedding.vec")


def _build_mind(ds: Dataset, files: dict[str, Path], tmp: Path, dest: Path) -> None:
    for archive, split in zip(ds.archives, ("train", "valid")):
        folder = tmp / split
        folder.mkdir()
        with zipfile.ZipFile(files[archive.filename]) as z:
            m = _members(z)
            _need(z, m, MIND_FILES, archive.filename)
            for name in MIND_FILES + MIND_EXTRAS:
                if name in m:
                    with z.open(m[name]) as src, open(folder / name, "wb") as dst:
                        shutil.copyfileobj(src, dst, CHUNK)
    (tmp / "README.txt").write_text(
        f"{ds.description} (Microsoft News Dataset), fetched by `recserve data fetch {ds.name}`.\n"
        f"Terms: {ds.terms}.\n\n"
        f"train/  {ds.archives[0].filename}: news.tsv, behaviors.tsv (and entity vectors)\n"
        f"valid/  {ds.archives[1].filename}: the following week's impressions, for validation\n\n"
        f"Train NRMS:\n"
        f"  recserve train --model nrms --data {dest}/train --valid-behaviors {dest}/valid/behaviors.tsv\n",
        encoding="utf-8")


_BUILDERS: dict[str, Callable[[Dataset, dict[str, Path], Path, Path], None]] = {
    "movielens-100k": _build_ml100k, "movielens-1m": _build_ml1m, "mind": _build_mind}
