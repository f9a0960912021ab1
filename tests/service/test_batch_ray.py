"""`recserve recommend --engine ray` gives the one-process path's records, in the same order, through Ray Data
actors (service/batch_ray.py); and the command's Parquet files. One local Ray (2 CPUs) for the whole module."""
from __future__ import annotations

import hashlib
import json
import sys

import pytest

from recserve.cli import main
from service.batch import load_for_batch, recommend_users
from service.batch_io import read_user_ids
from service.batch_ray import recommend_ray  # imports Ray only when it runs
from tests.service.test_fallback import strip_fallback

ray = pytest.importorskip("ray")
pq = pytest.importorskip("pyarrow.parquet")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray")  # Ray Data's own settings, not ours


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def users(models, name: str) -> list[str]:
    # Known users (twice: order and repeats are kept), users the model does not know, and the batch boundaries
    # of batch_size=4 falling inside them.
    known = models[name].users
    return [*known, "stranger", *reversed(known), "nobody", known[0]]


def assert_same(got: list[dict], want: list[dict]) -> None:
    """Equal records, scores to float tolerance (the same batches through the same code; but an actor runs
    onnxruntime on its own thread count, which may round differently)."""
    assert [r["user_id"] for r in got] == [r["user_id"] for r in want]
    for g, w in zip(got, want):
        assert g.keys() == w.keys(), (g, w)
        assert {k: g[k] for k in g if k != "results"} == {k: w[k] for k in w if k != "results"}
        if "results" in w:
            assert [(r["item_id"], r["rank"]) for r in g["results"]] == \
                [(r["item_id"], r["rank"]) for r in w["results"]]
            assert [r["score"] for r in g["results"]] == pytest.approx([r["score"] for r in w["results"]], rel=1e-6)


# Each run starts its actor pool (a second or more a worker process): a few runs cover both scorers (a matrix
# product; ConvNCF's pairwise graph), 1 and 2 actors, fallbacks and errors.
@pytest.mark.parametrize(("name", "actors"), [("bert4rec", 1), ("convncf", 2)])
def test_ray_gives_the_one_process_records_in_order(local_ray, bundles, models, name, actors):
    ids = users(models, name)
    want = list(recommend_users(load_for_batch(bundles[0] / name), ids, k=5, batch_size=4))
    got = list(recommend_ray(bundles[0] / name, ids, k=5, batch_size=4, actors=actors))
    assert_same(got, want)
    assert sum("fallback" in r for r in got) == 2 and all(len(r["results"]) == 5 for r in got)


def test_ray_gives_the_error_records_of_a_bundle_without_fallback(local_ray, artifacts, models):
    strip_fallback(next((artifacts / "gru4recf").glob("2026*")))
    ids = users(models, "gru4recf")
    want = list(recommend_users(load_for_batch(artifacts / "gru4recf"), ids, k=3, batch_size=4,
                                exclude_history=False))
    got = list(recommend_ray(artifacts / "gru4recf", ids, k=3, batch_size=4, exclude_history=False, actors=1))
    assert_same(got, want)
    assert [r["user_id"] for r in got if "error" in r] == ["stranger", "nobody"]


def test_the_command_writes_the_same_file_with_either_engine(local_ray, bundles, models, tmp_path, capsys):
    ids = users(models, "bert4rec")
    (tmp_path / "users.txt").write_text("\n".join(ids) + "\n\n")
    common = ["recommend", "--bundle", str(bundles[0] / "bert4rec"), "--k", "4", "--batch-size", "4",
              "--no-progress"]
    for engine, out in [("local", "local.jsonl"), ("local", "local.parquet"), ("ray", "ray.parquet")]:
        assert main([*common, "--users", str(tmp_path / "users.txt"), "--out", str(tmp_path / out),
                     "--engine", engine, "--actors", "2"]) == 0
        assert capsys.readouterr().out.startswith(f"{len(ids)} users scored (2 of them unknown to the model")
    records = [json.loads(line) for line in (tmp_path / "local.jsonl").read_text().splitlines()]
    assert [r["user_id"] for r in records] == ids
    table = pq.read_table(tmp_path / "ray.parquet")
    assert table.equals(pq.read_table(tmp_path / "local.parquet"))
    assert table.column_names == ["user_id", "results", "fallback", "error"]
    assert [{k: v for k, v in row.items() if v is not None} for row in table.to_pylist()] == records
    assert not list(tmp_path.glob("*.tmp"))


def test_users_from_parquet(bundles, tmp_path, capsys):
    import pyarrow as pa

    pq.write_table(pa.table({"user_id": ["u2", None, " u1 ", ""], "other": [1, 2, 3, 4]}), tmp_path / "u.parquet")
    assert read_user_ids(tmp_path / "u.parquet") == ["u2", "u1"]
    pq.write_table(pa.table({"id": [7, 8]}), tmp_path / "ints.parquet")
    assert read_user_ids(tmp_path / "ints.parquet") == ["7", "8"]
    pq.write_table(pa.table({"a": ["x"], "b": ["y"]}), tmp_path / "two.parquet")
    assert main(["recommend", "--bundle", str(bundles[0] / "bert4rec"), "--users", str(tmp_path / "two.parquet"),
                 "--out", str(tmp_path / "out.jsonl"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err == f"recserve: error: --users {tmp_path / 'two.parquet'}: no 'user_id' column (columns: a, b)\n"


def test_a_bad_bundle_is_one_line_from_the_ray_engine_too(local_ray, artifacts, tmp_path, capsys):
    # The hashes match, but onnxruntime cannot load the graph: only the actors find out.
    bundle = next((artifacts / "bert4rec").glob("2026*"))
    manifest = json.loads((bundle / "manifest.json").read_text())
    (bundle / "user_encoder.onnx").write_bytes(b"not onnx")
    manifest["files"]["user_encoder.onnx"] = hashlib.sha256(b"not onnx").hexdigest()
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    (tmp_path / "users.txt").write_text("u1\n")
    assert main(["recommend", "--bundle", str(bundle), "--users", str(tmp_path / "users.txt"), "--out",
                 str(tmp_path / "out.jsonl"), "--engine", "ray", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"recserve: error: {bundle}: onnxruntime cannot load a graph: ") and err.count("\n") == 1
    assert not list(tmp_path.glob("out.jsonl*"))


def test_without_ray_the_engine_asks_for_the_extra(bundles, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as if it were not installed
    (tmp_path / "users.txt").write_text("u1\n")
    assert main(["recommend", "--bundle", str(bundles[0] / "bert4rec"), "--users", str(tmp_path / "users.txt"),
                 "--out", str(tmp_path / "out.jsonl"), "--engine", "ray", "--no-progress"]) == 2
    assert capsys.readouterr().err == ("recserve: error: --engine ray needs Ray: pip install 'recserve[ray]' "
                                       "(ray is not installed)\n")
