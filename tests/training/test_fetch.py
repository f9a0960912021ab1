"""`recserve data fetch` (training.download, training.datasets, training.cli) against a local HTTP server
serving small archives built here: conversion, checksums, broken downloads and resume, fallback to a mirror,
and never leaving a half-written dataset."""
from __future__ import annotations

import hashlib
import io
import json
import re
import socket
import subprocess
import sys
import threading
import zipfile
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from training import datasets as D
from recserve.cli import build_parser
from training.download import FetchError


# --- a small HTTP server: Range support, one-shot broken transfers, a mode that ignores Range ---------------

class FileServer:
    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.break_after: dict[str, int] = {}   # path -> bytes sent before the connection drops (once)
        self.ignore_range = False
        self.requests: list[tuple[str, str | None, int]] = []   # (path, Range header, status)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                body = server.files.get(self.path)
                rng = self.headers.get("Range")
                if body is None:
                    server.requests.append((self.path, rng, 404))
                    self.send_error(404)
                    return
                start, status = 0, 200
                m = re.fullmatch(r"bytes=(\d+)-", rng or "")
                if m and not server.ignore_range:
                    start = int(m.group(1))
                    if start >= len(body):
                        server.requests.append((self.path, rng, 416))
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    status = 206
                server.requests.append((self.path, rng, status))
                self.send_response(status)
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                cut = server.break_after.pop(self.path, None)
                payload = body[start:] if cut is None else body[start:start + cut]
                self.wfile.write(payload)
                self.wfile.flush()
                if cut is not None:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def statuses(self, path: str) -> list[tuple[str | None, int]]:
        return [(r, s) for p, r, s in self.requests if p == path]


@pytest.fixture
def server():
    s = FileServer()
    s.thread.start()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


# --- fake archives ----------------------------------------------------------------------------------------

def _zip(members: dict[str, bytes], folder: str = "") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        if folder:
            z.writestr(folder + "/", b"")
        for name, data in members.items():
            z.writestr(f"{folder}/{name}" if folder else name, data)
    return buf.getvalue()


U_GENRE = "unknown|0\nAction|1\nChildren's|2\nFilm-Noir|3\nSci Fi|4\n\n"
U_ITEM = (
    "1|Toy Story (1995)|01-Jan-1995||http://x|0|0|1|0|0\n"
    "2|Shanghai Triad (Yao a yao yao dao waipo qiao) (1995)|01-Jan-1995||http://x|0|1|0|1|0\n"
    "3|Misérables, Les (1995)|01-Jan-1995||http://x|0|0|0|0|1\n"
    "4|unknown||||1|0|0|0|0\n"
    "5|Land Before Time III: The Time of the Great Giving (1995) (V)|01-Jan-1995||http://x|0|0|1|0|0\n"
    "6|Good Morning|01-Jan-1971||http://x|1|0|0|0|0\n"
)
U_DATA = "1\t1\t5\t881250949\n2\t3\t4\t881250950\n1\t2\t3\t881250951\n2\t6\t1\t881250952\n"
U_USER = "1|24|M|technician|85711\n2|53|F|other|94043\n"

ML100K_ITEM = (
    "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
    "1\tToy Story\t1995\tChildren's\n"
    "2\tShanghai Triad (Yao a yao yao dao waipo qiao)\t1995\tAction Film-Noir\n"
    "3\tMisérables, Les\t1995\tSci_Fi\n"
    "4\tunknown\t\tunknown\n"
    "5\tLand Before Time III: The Time of the Great Giving (V)\t1995\tChildren's\n"
    "6\tGood Morning\t1971\tunknown\n"
)


def ml100k_zip() -> bytes:
    return _zip({"u.data": U_DATA.encode(), "u.item": U_ITEM.encode("latin-1"), "u.genre": U_GENRE.encode(),
                 "u.user": U_USER.encode(), "README": b"MovieLens 100K README\n"}, folder="ml-100k")


NEWS = ("N1\tnews\tnewsus\tFirst title here\tabs\thttp://x\t[]\t[]\n"
        "N2\tsports\tfootball\tSecond title\tabs\thttp://x\t[]\t[]\n")
BEHAVIORS = ("1\tU1\t11/11/2019 9:05:58 AM\tN1\tN2-1 N1-0\n"
             "2\tU2\t11/12/2019 10:00:00 PM\tN2\tN1-1 N2-0\n")
DEV_NEWS = NEWS + "N3\tnews\tnewsworld\tThird one\tabs\thttp://x\t[]\t[]\n"
DEV_BEHAVIORS = "1\tU1\t11/15/2019 8:00:00 AM\tN1 N2\tN3-1 N2-0\n"


def mind_zips() -> tuple[bytes, bytes]:
    train = _zip({"news.tsv": NEWS.encode(), "behaviors.tsv": BEHAVIORS.encode(),
                  "entity_embedding.vec": b"Q1\t0.1\t0.2\n", "relation_embedding.vec": b"P1\t0.3\n"})
    dev = _zip({"news.tsv": DEV_NEWS.encode(), "behaviors.tsv": DEV_BEHAVIORS.encode()})
    return train, dev


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def table(name: str, *archives: tuple[str, bytes], pin: bool = True) -> dict[str, D.Dataset]:
    """A one-dataset table like DATASETS[name] with the fake archives' real sizes and (if pin) sha256s."""
    ds = D.DATASETS[name]
    fakes = [replace(a, filename=fn, sha256=sha(data) if pin else None, size=len(data), md5=None,
                     source="test") for a, (fn, data) in zip(ds.archives, archives)]
    return {name: replace(ds, archives=tuple(fakes))}


def serve(server: FileServer, *archives: tuple[str, bytes]) -> None:
    for fn, data in archives:
        server.files["/" + fn] = data


def run(name, dest, server, tables, **kw):
    out = io.StringIO()
    path = D.fetch(name, dest, base_url=server.url, progress=kw.pop("progress", False), datasets=tables,
                   out=out, **kw)
    return path, out.getvalue()


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".tmp-" in p.name or ".old-" in p.name)


# --- conversion -------------------------------------------------------------------------------------------

def test_ml100k_becomes_recbole_atomic_files(server, tmp_path):
    data = ml100k_zip()
    serve(server, ("ml-100k.zip", data))
    dest = tmp_path / "ml-100k"
    path, log = run("ml-100k", dest, server, table("ml-100k", ("ml-100k.zip", data)), progress=True)

    assert path == dest
    assert (dest / "ml-100k.inter").read_text(encoding="utf-8") == \
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n" + U_DATA
    assert (dest / "ml-100k.item").read_text(encoding="utf-8") == ML100K_ITEM
    assert (dest / "ml-100k.user").read_text(encoding="utf-8").splitlines() == [
        "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token",
        "1\t24\tM\ttechnician\t85711", "2\t53\tF\tother\t94043"]
    assert (dest / "README.grouplens.txt").read_text() == "MovieLens 100K README\n"
    assert "recserve train --model bert4rec --data" in (dest / "README.txt").read_text()
    manifest = json.loads((dest / "fetch.json").read_text())
    assert manifest["archives"][0] | {"urls": None} == {
        "file": "ml-100k.zip", "urls": None, "checksum_source": "test", "sha256": sha(data),
        "sha256_verified": True, "size": len(data)}
    assert not (dest / ".partial").exists() and leftovers(tmp_path) == []
    assert f"0.0 MB / 0.0 MB (100%)" in log and "ready" in log


def test_ml100k_output_reads_as_atomic_data(server, tmp_path):
    from training.data import atomic
    data = ml100k_zip()
    serve(server, ("ml-100k.zip", data))
    dest, _ = run("ml-100k", tmp_path / "ml-100k", server, table("ml-100k", ("ml-100k.zip", data)))
    loaded = atomic.read_atomic(dest)
    assert loaded.items.ids[1:] == ["1", "3", "2", "6"]     # order of first appearance in .inter
    assert set(loaded.item_features) >= {"movie_title", "class"}


def test_ml1m_becomes_recbole_atomic_files(server, tmp_path):
    movies = ("1::Toy Story (1995)::Animation|Children's|Comedy\n"
              "2::City of Lost Children, The (Cité des enfants perdus, La) (1995)::Adventure|Sci-Fi\n"
              "3::Double Indemnity (1944)::Crime|Film-Noir\n")
    ratings = "1::1::5::978300760\n1::3::3::978302109\n2::2::4::978301968\n"
    users = "1::F::1::10::48067\n2::M::56::16::70072\n"
    data = _zip({"movies.dat": movies.encode("latin-1"), "ratings.dat": ratings.encode(),
                 "users.dat": users.encode(), "README": b"ml-1m readme"}, folder="ml-1m")
    serve(server, ("ml-1m.zip", data))
    dest, _ = run("ml-1m", tmp_path / "ml-1m", server, table("ml-1m", ("ml-1m.zip", data)))

    assert (dest / "ml-1m.inter").read_text().splitlines() == [
        "user_id:token\titem_id:token\trating:float\ttimestamp:float",
        "1\t1\t5\t978300760", "1\t3\t3\t978302109", "2\t2\t4\t978301968"]
    assert (dest / "ml-1m.item").read_text(encoding="utf-8").splitlines() == [
        "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq",
        "1\tToy Story\t1995\tAnimation Children's Comedy",
        "2\tCity of Lost Children, The (Cité des enfants perdus, La)\t1995\tAdventure Sci-Fi",
        "3\tDouble Indemnity\t1944\tCrime Film-Noir"]
    assert (dest / "ml-1m.user").read_text().splitlines()[1:] == ["1\t1\tF\t10\t48067", "2\t56\tM\t16\t70072"]


def test_mind_unpacks_train_and_valid_with_readme(server, tmp_path):
    train, dev = mind_zips()
    serve(server, ("MINDdemo_train.zip", train), ("MINDdemo_dev.zip", dev))
    dest, _ = run("mind-demo", tmp_path / "mind", server,
                  table("mind-demo", ("MINDdemo_train.zip", train), ("MINDdemo_dev.zip", dev)))

    assert (dest / "train" / "news.tsv").read_text() == NEWS
    assert (dest / "train" / "behaviors.tsv").read_text() == BEHAVIORS
    assert (dest / "train" / "entity_embedding.vec").exists()
    assert (dest / "valid" / "news.tsv").read_text() == DEV_NEWS
    assert (dest / "valid" / "behaviors.tsv").read_text() == DEV_BEHAVIORS
    readme = (dest / "README.txt").read_text()
    assert (f"recserve train --model nrms --data {dest}/train --valid-behaviors {dest}/valid/behaviors.tsv"
            in readme)
    assert sorted(p.name for p in dest.iterdir()) == ["README.txt", "fetch.json", "train", "valid"]

    from training.data import mind
    loaded = mind.read_mind(dest / "train", valid_behaviors=dest / "valid" / "behaviors.tsv")
    assert loaded.news.n_news == 3


def test_split_title_rules():
    assert D.split_title("Toy Story (1995)") == ("Toy Story", "1995")
    assert D.split_title("Seven (Se7en) (1995)") == ("Seven (Se7en)", "1995")
    assert D.split_title("Good Morning", "01-Jan-1971") == ("Good Morning", "1971")
    assert D.split_title("unknown", "") == ("unknown", "")
    assert D.genre_token("Film Noir") == "Film_Noir" and D.genre_token("Children's") == "Children's"


# --- checksums --------------------------------------------------------------------------------------------

def test_sha256_mismatch_is_a_clear_error_and_leaves_nothing(server, tmp_path):
    data = ml100k_zip()
    serve(server, ("ml-100k.zip", data))
    bad = {"ml-100k": replace(D.DATASETS["ml-100k"], archives=(
        replace(D.DATASETS["ml-100k"].archives[0], sha256="0" * 64, size=len(data), md5=None),))}
    dest = tmp_path / "ml-100k"
    with pytest.raises(FetchError) as err:
        run("ml-100k", dest, server, bad)
    msg = str(err.value)
    assert "sha256 mismatch" in msg and f"expected {'0' * 64}" in msg and f"got {sha(data)}" in msg
    assert not dest.exists() and leftovers(tmp_path) == []


def test_size_mismatch_is_caught_before_hashing(server, tmp_path):
    data = ml100k_zip()
    serve(server, ("ml-100k.zip", data))
    tables = table("ml-100k", ("ml-100k.zip", data))
    tables["ml-100k"] = replace(tables["ml-100k"], archives=(replace(tables["ml-100k"].archives[0],
                                                                     size=len(data) + 1),))
    with pytest.raises(FetchError, match="size mismatch"):
        run("ml-100k", tmp_path / "d", server, tables)
    assert not (tmp_path / "d").exists()


def test_unpinned_archive_prints_its_hash_loudly(server, tmp_path):
    train, dev = mind_zips()
    serve(server, ("MINDdemo_train.zip", train), ("MINDdemo_dev.zip", dev))
    tables = table("mind-demo", ("MINDdemo_train.zip", train), ("MINDdemo_dev.zip", dev), pin=False)
    dest, log = run("mind-demo", tmp_path / "mind", server, tables)
    assert f"WARNING: computed sha256 = {sha(train)}" in log
    assert f"--sha256 MINDdemo_dev.zip={sha(dev)}" in log
    manifest = json.loads((dest / "fetch.json").read_text())
    assert [a["sha256_verified"] for a in manifest["archives"]] == [False, False]


def test_require_sha256_refuses_unpinned_archives_before_downloading(server, tmp_path):
    train, dev = mind_zips()
    serve(server, ("MINDdemo_train.zip", train), ("MINDdemo_dev.zip", dev))
    tables = table("mind-demo", ("MINDdemo_train.zip", train), ("MINDdemo_dev.zip", dev), pin=False)
    with pytest.raises(FetchError, match="no published sha256"):
        run("mind-demo", tmp_path / "mind", server, tables, require_sha256=True)
    assert server.requests == [] and not (tmp_path / "mind").exists()
    # pinning on the command line satisfies it, and a wrong pin fails
    pins = {"MINDdemo_train.zip": sha(train), "MINDdemo_dev.zip": sha(dev)}
    run("mind-demo", tmp_path / "mind", server, tables, require_sha256=True, sha256=pins)
    with pytest.raises(FetchError, match="sha256 mismatch"):
        run("mind-demo", tmp_path / "mind2", server, tables, sha256={"MINDdemo_dev.zip": "a" * 64})


def test_bad_pins_are_rejected(server, tmp_path):
    with pytest.raises(FetchError, match="not an archive of this dataset"):
        D.fetch("ml-100k", tmp_path / "x", sha256={"nope.zip": "a" * 64}, progress=False)
    with pytest.raises(FetchError, match="not a 64-digit hex"):
        D.fetch("ml-100k", tmp_path / "x", sha256={"ml-100k.zip": "xyz"}, progress=False)
    with pytest.raises(FetchError, match="unknown dataset"):
        D.fetch("ml-20m", tmp_path / "x", progress=False)
    assert not (tmp_path / "x").exists()


# --- broken downloads, resume, mirrors --------------------------------------------------------------------

def test_broken_download_then_resume_with_range(server, tmp_path):
    data = ml100k_zip()
    serve(server, ("ml-100k.zip", data))
    cut = len(data) // 3
    server.break_after["/ml-100k.zip"] = cut
    tables = table("ml-100k", ("ml-100k.zip", data))
    dest = tmp_path / "ml-100k"
    with pytest.raises(FetchError) as err:
        run("ml-100k", dest, server, tables)
    assert "download broke" in str(err.value) and "resume" in str(err.value)
    part = dest / ".partial" / "ml-100k.zip.part"
    assert part.read_bytes() == data[:cut]
    assert [p.name for p in dest.iterdir()] == [".partial"]          # no dataset files yet

    _, log = run("ml-100k", dest, server, tables)
    assert server.statuses("/ml-100k.zip") == [(None, 200), (f"bytes={cut}-", 206)]
    assert "resuming at" in log
    assert (dest / "ml-100k.item").read_text(encoding="utf-8") == ML100K_ITEM
    assert not (dest / ".partial").exists()


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    data = ml100k_zip()
    serve(server, ("ml-100k.zip", data))
    server.ignore_range = True
    dest = tmp_path / "ml-100k"
    (dest / ".partial").mkdir(parents=True)
    (dest / ".partial" / "ml-100k.zip.part").write_bytes(data[:100])
    _, log = run("ml-100k", dest, server, table("ml-100k", ("ml-100k.zip", data)))
    assert server.statuses("/ml-100k.zip") == [("bytes=100-", 200)]
    assert "restarting from zero" in log
    assert (dest / "ml-100k.inter").exists()


def test_complete_part_is_verified_without_downloading(server, tmp_path):
    data = ml100k_zip()
    dest = tmp_path / "ml-100k"
    (dest / ".partial").mkdir(parents=True)
    (dest / ".partial" / "ml-100k.zip.part").write_bytes(data)
    _, log = run("ml-100k", dest, server, table("ml-100k", ("ml-100k.zip", data)))
    assert server.requests == [] and "already downloaded" in log


def test_unreachable_location_falls_through_to_the_mirror(server, tmp_path):
    data = ml100k_zip()
    serve(server, ("ml-100k.zip", data))
    tables = table("ml-100k", ("ml-100k.zip", data))
    a = tables["ml-100k"].archives[0]
    tables["ml-100k"] = replace(tables["ml-100k"], archives=(replace(a, urls=(
        server.url + "/gone/ml-100k.zip", server.url + "/ml-100k.zip")),))
    out = io.StringIO()
    D.fetch("ml-100k", tmp_path / "d", progress=False, datasets=tables, out=out)
    assert "HTTP 404" in out.getvalue() and "trying the next location" in out.getvalue()
    assert (tmp_path / "d" / "ml-100k.inter").exists()

    tables["ml-100k"] = replace(tables["ml-100k"], archives=(replace(a, urls=(server.url + "/gone.zip",)),))
    with pytest.raises(FetchError, match="no location could be reached"):
        D.fetch("ml-100k", tmp_path / "e", progress=False, datasets=tables, out=io.StringIO())
    assert not (tmp_path / "e").exists()


def test_not_a_zip_is_deleted_and_reported(server, tmp_path):
    junk = b"<html>not a zip</html>"
    serve(server, ("ml-100k.zip", junk))
    with pytest.raises(FetchError, match="not a valid zip"):
        run("ml-100k", tmp_path / "d", server, table("ml-100k", ("ml-100k.zip", junk)))
    assert not (tmp_path / "d").exists() and leftovers(tmp_path) == []


# --- an existing dataset ----------------------------------------------------------------------------------

def test_existing_dataset_is_never_overwritten_half_way(server, tmp_path):
    data = ml100k_zip()
    serve(server, ("ml-100k.zip", data))
    tables = table("ml-100k", ("ml-100k.zip", data))
    dest, _ = run("ml-100k", tmp_path / "ml-100k", server, tables)
    before = {p.name: p.read_bytes() for p in dest.iterdir()}

    with pytest.raises(FetchError, match="already holds a fetched dataset"):
        run("ml-100k", dest, server, tables)
    assert len(server.requests) == 1                      # refused before downloading

    # --overwrite with a download that breaks, then one that fails its checksum: the old dataset stays whole
    server.break_after["/ml-100k.zip"] = 50
    with pytest.raises(FetchError, match="download broke"):
        run("ml-100k", dest, server, tables, overwrite=True)
    bad = {"ml-100k": replace(tables["ml-100k"], archives=(replace(tables["ml-100k"].archives[0],
                                                                   sha256="f" * 64),))}
    with pytest.raises(FetchError, match="sha256 mismatch"):
        run("ml-100k", dest, server, bad, overwrite=True)
    assert {p.name: p.read_bytes() for p in dest.iterdir()} == before
    assert leftovers(tmp_path) == []

    # --overwrite that succeeds swaps the new dataset in whole
    (dest / "stale.txt").write_text("from the old dataset")
    run("ml-100k", dest, server, tables, overwrite=True)
    assert not (dest / "stale.txt").exists() and (dest / "ml-100k.item").read_text(encoding="utf-8") == ML100K_ITEM
    assert leftovers(tmp_path) == [] and not (dest / ".partial").exists()


def test_foreign_files_in_dest_are_left_alone(server, tmp_path):
    dest = tmp_path / "d"
    dest.mkdir()
    (dest / "notes.txt").write_text("mine")
    with pytest.raises(FetchError, match=r"other files \(notes.txt\)"):
        D.fetch("ml-100k", dest, base_url=server.url, progress=False)
    assert [p.name for p in dest.iterdir()] == ["notes.txt"] and server.requests == []


# --- the production table and the CLI ---------------------------------------------------------------------

def test_production_table_is_honest():
    assert set(D.DATASETS) == {"mind-small", "mind-demo", "ml-100k", "ml-1m"}
    for ds in D.DATASETS.values():
        for a in ds.archives:
            assert a.urls and all(u.startswith("https://") and u.endswith("/" + a.filename) for u in a.urls)
            assert a.source and a.size and a.size > 0
            if a.sha256 is not None:
                assert re.fullmatch(r"[0-9a-f]{64}", a.sha256)
    for name in ("ml-100k", "ml-1m"):     # MovieLens: published checksums pinned, GroupLens URL first
        (a,) = D.DATASETS[name].archives
        assert a.sha256 and a.md5 and a.urls[0] == f"https://files.grouplens.org/datasets/movielens/{name}.zip"
    for name, prefix in (("mind-small", "MINDsmall"), ("mind-demo", "MINDdemo")):
        train, dev = D.DATASETS[name].archives
        assert (train.filename, dev.filename) == (f"{prefix}_train.zip", f"{prefix}_dev.zip")
        assert train.urls[0] == f"https://recodatasets.z20.web.core.windows.net/newsrec/{prefix}_train.zip"
        assert train.sha256 is None and "no checksum" in train.source   # said so, and fetch warns


def test_cli_parser_and_command(server, tmp_path, capsys, monkeypatch):
    data = ml100k_zip()
    serve(server, ("ml-100k.zip", data))
    monkeypatch.setattr(D, "DATASETS", table("ml-100k", ("ml-100k.zip", data)) | {
        k: v for k, v in D.DATASETS.items() if k != "ml-100k"})
    parser = build_parser()

    args = parser.parse_args(["data", "fetch", "ml-100k", "--dest", str(tmp_path / "d"), "--base-url", server.url,
                              "--no-progress"])
    assert args.func(args) == 0 and (tmp_path / "d" / "ml-100k.inter").exists()

    args = parser.parse_args(["data", "fetch", "ml-100k", "--dest", str(tmp_path / "e"), "--base-url", server.url,
                              "--sha256", "ml-100k.zip=" + "1" * 64, "--no-progress"])
    assert args.func(args) == 2
    assert "recserve: error: ml-100k.zip: sha256 mismatch" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parser.parse_args(["data", "fetch", "ml-20m", "--dest", "x"])


def test_fetch_imports_no_torch():
    # the whole `recserve data fetch` path through main(): the parser, main's and the command's imports (a bad
    # --sha256 stops it before any download, so nothing is fetched or written)
    code = ("import sys, recserve.cli; "
            "rc = recserve.cli.main(['data', 'fetch', 'ml-100k', '--dest', 'unused', '--sha256', 'no-equals-sign']); "
            "sys.exit(rc != 2 or 'torch' in sys.modules or 'training.download' not in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parents[2],
                          capture_output=True).returncode == 0
