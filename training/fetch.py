"""`recserve data fetch NAME --dest DIR`: download a real dataset, verify it, lay it out for `recserve train`.

Standard library and numpy only (no torch): it runs in any image.

Datasets (``DATASETS``):

- ``ml-100k``, ``ml-1m``: MovieLens from GroupLens, converted to RecBole atomic files in DIR:
  ``<name>.inter`` (``user_id:token item_id:token rating:float timestamp:float``), ``<name>.item``
  (``item_id:token movie_title:token_seq release_year:token class:token_seq``) and ``<name>.user``.
  Train with ``recserve train --model bert4rec --data DIR``.
- ``mind-small``, ``mind-demo``: MIND (Microsoft News Dataset), train and dev archives unpacked into
  ``DIR/train/`` and ``DIR/valid/`` (``news.tsv``, ``behaviors.tsv`` and the entity vectors), with a
  README.txt. Train with ``recserve train --model nrms --data DIR/train --valid-behaviors DIR/valid/behaviors.tsv``.

How a fetch goes, and what a failure leaves behind:

1. Each archive downloads to ``DIR/.partial/<file>.part`` with a progress line. If a ``.part`` is already
   there, the download resumes with an HTTP Range request (a server that ignores Range answers 200 and the
   download restarts from zero). A broken transfer raises ``FetchError`` and keeps the ``.part``: run the
   same command again to resume. A URL that cannot be reached at all falls through to the next mirror.
2. The finished file is checked against its pinned size and sha256. A mismatch deletes the ``.part`` and
   raises ``FetchError`` naming the expected and the computed value. An archive with no citable published
   sha256 (MIND: see ``_MIND_NOTE``) is checked against its size only and its computed sha256 is printed
   loudly with how to pin it (``--sha256 FILE=HEX``); ``require_sha256=True`` (``--require-sha256``)
   refuses such archives before downloading anything.
3. The dataset is built in a temporary folder next to DIR (``.DIR.tmp-*``) and renamed into place at the
   end, with a ``fetch.json`` recording sources and checksums. DIR is therefore either absent, holding only
   ``.partial/``, or complete. An existing dataset in DIR is never touched unless ``overwrite=True``, and
   even then it is swapped out only once the new one is complete.
"""
from __future__ import annotations

import argparse
import hashlib
import http.client
import io
import json
import re
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TextIO

PARTIAL = ".partial"
MANIFEST = "fetch.json"
CHUNK = 1 << 20
TIMEOUT_S = 60.0
USER_AGENT = "recserve-fetch/0.1 (+https://github.com; python-urllib)"


class FetchError(RuntimeError):
    """A download, verification or conversion failed; the message says what to do next."""


@dataclass(frozen=True)
class Archive:
    filename: str
    urls: tuple[str, ...]          # tried in order: the publisher's location first, then mirrors
    sha256: str | None             # None: no citable published value (see `source`)
    size: int | None               # bytes; checked too
    source: str                    # where sha256 and size come from
    md5: str | None = None         # the publisher's own md5, checked when set


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
    out = sys.stderr if out is None else out
    archives = _resolve(ds, base_url, sha256 or {})
    if require_sha256:
        unpinned = [a.filename for a in archives if not a.sha256]
        if unpinned:
            raise FetchError(f"{name}: no published sha256 for {', '.join(unpinned)} and --require-sha256 is set; "
                             f"pin them with --sha256 FILE=HEX")

    dest = Path(dest).absolute()
    _check_dest(dest, overwrite)
    created = not dest.exists()
    partial = dest / PARTIAL
    partial.mkdir(parents=True, exist_ok=True)
    try:
        files = {a.filename: _download(a, partial, progress, out) for a in archives}
        checks = {a.filename: _verify(a, files[a.filename], out) for a in archives}
    except BaseException:
        _tidy_failed(dest, partial, created)
        raise

    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    try:
        _BUILDERS[ds.kind](ds, files, tmp, dest)
        _write_manifest(tmp, ds, archives, checks)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(err, zipfile.BadZipFile):   # verified size but not a zip: useless, start over next time
            for path in files.values():
                path.unlink(missing_ok=True)
            _tidy_failed(dest, partial, created)
            raise FetchError(f"{name}: a downloaded archive is not a valid zip file ({err}); it was deleted, "
                             f"run again to download it afresh") from err
        if isinstance(err, (KeyError, ValueError, UnicodeDecodeError)):
            raise FetchError(f"{name}: could not unpack or convert the downloaded archives ({err}); the "
                             f"archives are kept in {partial}") from err
        raise
    _swap_into_place(tmp, dest, partial)
    print(f"{name}: ready in {dest}", file=out)
    return dest


def _resolve(ds: Dataset, base_url: str | None, pins: Mapping[str, str]) -> list[Archive]:
    known = {a.filename for a in ds.archives}
    stray = sorted(set(pins) - known)
    if stray:
        raise FetchError(f"{ds.name}: --sha256 names {', '.join(stray)}, not an archive of this dataset "
                         f"({', '.join(sorted(known))})")
    archives = []
    for a in ds.archives:
        if a.filename in pins:
            pin = pins[a.filename].strip().lower()
            if not re.fullmatch(r"[0-9a-f]{64}", pin):
                raise FetchError(f"--sha256 {a.filename}={pins[a.filename]}: not a 64-digit hex sha256")
            a = replace(a, sha256=pin, source="pinned on the command line")
        if base_url:
            a = replace(a, urls=(base_url.rstrip("/") + "/" + a.filename,))
        archives.append(a)
    return archives


def _check_dest(dest: Path, overwrite: bool) -> None:
    if dest.exists() and not dest.is_dir():
        raise FetchError(f"{dest} exists and is not a folder")
    if not dest.exists() or overwrite:
        return
    others = sorted(p.name for p in dest.iterdir() if p.name != PARTIAL)
    if others:
        what = "a fetched dataset" if MANIFEST in others else f"other files ({', '.join(others[:5])})"
        raise FetchError(f"{dest} already holds {what}; nothing was changed. Pass --overwrite to replace it "
                         f"or choose another --dest")


def _tidy_failed(dest: Path, partial: Path, created: bool) -> None:
    """After a failure: drop an empty .partial, and dest too if this fetch created it and it is empty."""
    for folder in (partial, dest) if created else (partial,):
        try:
            folder.rmdir()
        except OSError:
            break


def _swap_into_place(tmp: Path, dest: Path, partial: Path) -> None:
    old = None
    leftover = [p for p in dest.iterdir() if p.name != PARTIAL] if dest.exists() else []
    if leftover:                       # overwrite: move the old dataset aside, not delete it first
        old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent))
        for p in leftover:
            p.rename(old / p.name)
    try:
        shutil.rmtree(partial, ignore_errors=True)
        if dest.exists():
            dest.rmdir()
        tmp.rename(dest)
    except OSError as err:
        if old is not None:            # put the old dataset back
            dest.mkdir(exist_ok=True)
            for p in old.iterdir():
                p.rename(dest / p.name)
            old.rmdir()
        shutil.rmtree(tmp, ignore_errors=True)
        raise FetchError(f"could not move the new dataset into {dest} ({err}); {dest} is as it was") from err
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# --- download ---------------------------------------------------------------------------------------------

def _download(a: Archive, partial: Path, progress: bool, out: TextIO) -> Path:
    part = partial / (a.filename + ".part")
    if part.exists() and a.size is not None:
        have = part.stat().st_size
        if have == a.size:
            print(f"{a.filename}: already downloaded, verifying", file=out)
            return part
        if have > a.size:
            part.unlink()
    failures = []
    for url in a.urls:
        try:
            _get(url, part, a, progress, out)
            return part
        except _Unreachable as err:
            failures.append(f"  {url}: {err}")
            if len(a.urls) > 1:
                print(f"{a.filename}: {url} unreachable ({err}); trying the next location", file=out)
    raise FetchError(f"{a.filename}: no location could be reached:\n" + "\n".join(failures))


class _Unreachable(Exception):
    """Nothing was transferred from this URL: try the next one."""


def _get(url: str, part: Path, a: Archive, progress: bool, out: TextIO) -> None:
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=TIMEOUT_S)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:   # nothing left to send: the .part is whole (the checks will tell)
            total = _content_range_total(err.headers.get("Content-Range"))
            if total == have:
                return
            part.unlink()              # the .part is longer than the file: start again
            return _get(url, part, a, progress, out)
        raise _Unreachable(f"HTTP {err.code} {err.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
        raise _Unreachable(getattr(err, "reason", None) or err) from None

    with resp:
        if have and resp.status == 206:
            start = _content_range_start(resp.headers.get("Content-Range"))
            if start != have:
                raise FetchError(f"{a.filename}: the server resumed at byte {start}, not {have}; delete "
                                 f"{part} and run again")
            mode, done = "ab", have
            print(f"{a.filename}: resuming at {_mb(have)}", file=out)
        else:
            if have:
                print(f"{a.filename}: the server ignored the Range request; restarting from zero", file=out)
            mode, done = "wb", 0
        length = resp.headers.get("Content-Length")
        total = done + int(length) if length is not None and length.isdigit() else a.size
        show = _Progress(a.filename, total, out) if progress else None
        try:
            with open(part, mode) as f:
                while True:
                    chunk = resp.read(CHUNK)
                    if not chunk:
                        break
                    f.write(chunk)
                    done += len(chunk)
                    if show:
                        show(done)
        except (http.client.IncompleteRead, OSError, http.client.HTTPException) as err:
            reason = type(err).__name__ if isinstance(err, http.client.IncompleteRead) else err
            raise _broken(a, part, done, total, reason) from None
        finally:
            if show:
                show.close(done)
        if total is not None and done < total:
            raise _broken(a, part, done, total, "the connection closed early")


def _broken(a: Archive, part: Path, done: int, total: int | None, reason) -> FetchError:
    of = f" of {_mb(total)}" if total else ""
    return FetchError(f"{a.filename}: download broke after {_mb(done)}{of} ({reason}). The partial file is kept "
                      f"at {part}; run the same command again to resume.")


def _content_range_start(value: str | None) -> int | None:
    m = re.match(r"bytes\s+(\d+)-\d+/(\d+|\*)", value or "")
    return int(m.group(1)) if m else None


def _content_range_total(value: str | None) -> int | None:
    m = re.search(r"/(\d+)\s*$", value or "")
    return int(m.group(1)) if m else None


def _mb(n: int | None) -> str:
    return "?" if n is None else f"{n / 1e6:.1f} MB"


class _Progress:
    """``name: 12.3 MB / 52.9 MB (23%)``, rewritten in place at most 10 times a second."""

    def __init__(self, name: str, total: int | None, out: TextIO):
        self.name, self.total, self.out, self.last = name, total, out, 0.0

    def __call__(self, done: int) -> None:
        now = time.monotonic()
        if now - self.last >= 0.1:
            self.last = now
            self._line(done, "\r")

    def close(self, done: int) -> None:
        self._line(done, "\r")
        self.out.write("\n")
        self.out.flush()

    def _line(self, done: int, lead: str) -> None:
        pct = f" ({100 * done // self.total}%)" if self.total else ""
        self.out.write(f"{lead}{self.name}: {_mb(done)} / {_mb(self.total)}{pct}")
        self.out.flush()


# --- verification -----------------------------------------------------------------------------------------

def _verify(a: Archive, part: Path, out: TextIO) -> dict:
    size = part.stat().st_size
    if a.size is not None and size != a.size:
        part.unlink()
        raise FetchError(f"{a.filename}: size mismatch: expected {a.size} bytes, got {size}. The download was "
                         f"deleted; run again (or check --base-url)")
    sha, md5 = hashlib.sha256(), hashlib.md5()
    with open(part, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            sha.update(block)
            md5.update(block)
    got = sha.hexdigest()
    if a.sha256 and got != a.sha256:
        part.unlink()
        raise FetchError(f"{a.filename}: sha256 mismatch: expected {a.sha256}, got {got}. The download was "
                         f"deleted; nothing was written to the dataset folder")
    if a.md5 and md5.hexdigest() != a.md5:
        part.unlink()
        raise FetchError(f"{a.filename}: md5 mismatch: expected {a.md5}, got {md5.hexdigest()}. The download "
                         f"was deleted")
    if not a.sha256:
        bar = "!" * 78
        print(f"{bar}\nWARNING: {a.filename} has no published sha256; only its size was checked.\n"
              f"WARNING: computed sha256 = {got}\n"
              f"WARNING: check it against a trusted copy, then pin it: --sha256 {a.filename}={got}\n{bar}",
              file=out)
    return {"sha256": got, "sha256_verified": bool(a.sha256), "size": size}


def _write_manifest(folder: Path, ds: Dataset, archives: list[Archive], checks: dict[str, dict]) -> None:
    doc = {"dataset": ds.name, "description": ds.description, "terms": ds.terms,
           "fetched_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "archives": [{"file": a.filename, "urls": list(a.urls), "checksum_source": a.source,
                         **checks[a.filename]} for a in archives]}
    (folder / MANIFEST).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")


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


# --- CLI --------------------------------------------------------------------------------------------------

def add_fetch_parser(subparsers) -> None:
    """Register ``fetch NAME --dest DIR [--base-url URL] ...`` on an argparse subparsers object."""
    lines = [f"  {n:<11} {d.description}" for n, d in DATASETS.items()]
    p = subparsers.add_parser(
        "fetch", help="download a real dataset (MovieLens, MIND) and prepare it for training",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Download, verify (size + sha256) and convert a dataset into --dest.\nDownloads resume "
                    "when run again after a break; the dataset folder appears only when complete.\n\n"
                    + "\n".join(lines))
    p.add_argument("name", choices=sorted(DATASETS), metavar="NAME", help="one of: " + ", ".join(DATASETS))
    p.add_argument("--dest", type=Path, required=True, help="the dataset folder to create, e.g. data/ml-100k")
    p.add_argument("--base-url", help="fetch archives from URL/<file name> instead (a mirror or local server)")
    p.add_argument("--sha256", action="append", default=[], metavar="FILE=HEX",
                   help="pin an archive's sha256 (repeatable), e.g. MINDsmall_train.zip=ab12...")
    p.add_argument("--require-sha256", action="store_true",
                   help="refuse archives with no pinned sha256 instead of warning")
    p.add_argument("--overwrite", action="store_true", help="replace a dataset already in --dest")
    p.add_argument("--no-progress", action="store_true", help="no progress line")
    p.set_defaults(func=cmd_fetch)


def cmd_fetch(args) -> int:
    pins = {}
    for item in args.sha256:
        file, eq, hexdigest = item.partition("=")
        if not eq:
            print(f"recserve: error: --sha256 {item!r}: expected FILE=HEX", file=sys.stderr)
            return 2
        pins[file.strip()] = hexdigest
    try:
        fetch(args.name, args.dest, base_url=args.base_url, progress=not args.no_progress, sha256=pins,
              require_sha256=args.require_sha256, overwrite=args.overwrite)
    except FetchError as err:
        print(f"recserve: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # python -m training.fetch NAME --dest DIR
    parser = argparse.ArgumentParser(prog="python -m training.fetch")
    add_fetch_parser(parser.add_subparsers(dest="command", required=True))
    ns = parser.parse_args(["fetch", *sys.argv[1:]])
    sys.exit(ns.func(ns))
