"""The download engine behind `recserve data fetch`: resumable, checksum-verified archive downloads, and a
dataset folder that appears only when complete. It knows nothing of particular datasets (training.datasets
holds the table and the converters); it is given archives and a function that builds the folder from them.

Standard library only (no torch): it runs in any image.

How a fetch goes, and what a failure leaves behind:

1. Each archive downloads to ``DIR/.partial/<file>.part`` with a progress line. If a ``.part`` is already
   there, the download resumes with an HTTP Range request (a server that ignores Range answers 200 and the
   download restarts from zero). A broken transfer raises ``FetchError`` and keeps the ``.part``: run the
   same command again to resume. A URL that cannot be reached at all falls through to the next mirror.
2. The finished file is checked against its pinned size and sha256. A mismatch deletes the ``.part`` and
   raises ``FetchError`` naming the expected and the computed value. An archive with no citable published
   sha256 (``Archive.sha256`` None) is checked against its size only and its computed sha256 is printed
   loudly with how to pin it (``--sha256 FILE=HEX``); ``require_sha256=True`` (``--require-sha256``)
   refuses such archives before downloading anything.
3. The dataset is built in a temporary folder next to DIR (``.DIR.tmp-*``) and renamed into place at the
   end, with a ``fetch.json`` recording sources and checksums. DIR is therefore either absent, holding only
   ``.partial/``, or complete. An existing dataset in DIR is never touched unless ``overwrite=True``, and
   even then it is swapped out only once the new one is complete.
"""
from __future__ import annotations

import hashlib
import http.client
import json
import re
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Mapping, Sequence
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


# build(files, folder, dest): turn the verified archives ({file name: path}) into the dataset inside folder, a
# temporary folder renamed to dest once complete (dest is only for text that names the final place).
Builder = Callable[[dict[str, Path], Path, Path], None]


# --- the orchestration ------------------------------------------------------------------------------------

def download_and_build(label: str, archives: Sequence[Archive], dest: str | Path, build: Builder, *,
                       about: Mapping[str, str], progress: bool = True, require_sha256: bool = False,
                       overwrite: bool = False, out: TextIO | None = None) -> Path:
    """Download and verify ``archives``, build the dataset from them with ``build`` and swap it into ``dest``.

    label: the dataset's name, for messages. about: the first fields of ``fetch.json`` (what was fetched).
    progress: print a progress line per archive (to ``out``, default stderr).
    require_sha256: refuse an archive with no pinned sha256 instead of warning.
    overwrite: replace a dataset already in ``dest`` (swapped only once the new one is complete).
    """
    out = sys.stderr if out is None else out
    if require_sha256:
        unpinned = [a.filename for a in archives if not a.sha256]
        if unpinned:
            raise FetchError(f"{label}: no published sha256 for {', '.join(unpinned)} and --require-sha256 is set; "
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
        build(files, tmp, dest)
        _write_manifest(tmp, about, archives, checks)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(err, zipfile.BadZipFile):   # verified size but not a zip: useless, start over next time
            for path in files.values():
                path.unlink(missing_ok=True)
            _tidy_failed(dest, partial, created)
            raise FetchError(f"{label}: a downloaded archive is not a valid zip file ({err}); it was deleted, "
                             f"run again to download it afresh") from err
        if isinstance(err, (KeyError, ValueError, UnicodeDecodeError)):
            raise FetchError(f"{label}: could not unpack or convert the downloaded archives ({err}); the "
                             f"archives are kept in {partial}") from err
        raise
    _swap_into_place(tmp, dest, partial)
    print(f"{label}: ready in {dest}", file=out)
    return dest


def resolve_archives(label: str, archives: Sequence[Archive], base_url: str | None,
                     pins: Mapping[str, str]) -> list[Archive]:
    """``archives`` with the ``{file name: hex}`` sha256 pins applied and, given ``base_url``, fetched from
    ``<base_url>/<file name>`` instead of their own URLs."""
    known = {a.filename for a in archives}
    stray = sorted(set(pins) - known)
    if stray:
        raise FetchError(f"{label}: --sha256 names {', '.join(stray)}, not an archive of this dataset "
                         f"({', '.join(sorted(known))})")
    resolved = []
    for a in archives:
        if a.filename in pins:
            pin = pins[a.filename].strip().lower()
            if not re.fullmatch(r"[0-9a-f]{64}", pin):
                raise FetchError(f"--sha256 {a.filename}={pins[a.filename]}: not a 64-digit hex sha256")
            a = replace(a, sha256=pin, source="pinned on the command line")
        if base_url:
            a = replace(a, urls=(base_url.rstrip("/") + "/" + a.filename,))
        resolved.append(a)
    return resolved

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


def _write_manifest(folder: Path, about: Mapping[str, str], archives: Sequence[Archive],
                    checks: dict[str, dict]) -> None:
    doc = {**about, "fetched_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "archives": [{"file": a.filename, "urls": list(a.urls), "checksum_source": a.source,
                         **checks[a.filename]} for a in archives]}
    (folder / MANIFEST).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
