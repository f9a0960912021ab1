"""Bundle loading: verification by sha256, LATEST resolution, clear refusals naming the file."""
import json
import os
import threading

import pytest

from bundle.contract import BundleError
from bundle.reader import discover, load_bundle, older_versions, resolve_latest


def test_load_reads_every_part(models):
    nrms = models["nrms"]
    bundle = load_bundle(nrms.path)
    assert bundle.model == "nrms" and bundle.dim == 8 and bundle.scorer == "dot_sigmoid"
    assert bundle.items.all()[:2] == ["N1", "N2"] and bundle.items.get("N2") == 1 and bundle.items.get("x") is None
    assert bundle.tokenizer_path is not None
    assert [bundle.items.id(int(i) - 1) for i in bundle.histories.get("u1")] == nrms.histories["u1"]
    assert load_bundle(models["convncf"].path).users.id(0) == "u1"


def test_item_vectors_are_mapped_from_the_file_and_equal_the_encoder(models):
    """The catalog is the exporter's precomputed vectors, memory-mapped (read-only, shared by workers), not
    re-encoded: here equal to the torch item encoder's output, row 0 the padding."""
    import numpy as np

    for model in models.values():
        vectors = load_bundle(model.path).item_vectors
        assert isinstance(vectors.base, np.memmap) and not vectors.flags.writeable
        assert np.allclose(vectors, model.item_matrix().numpy(), atol=1e-6) and not vectors[0].any()


def test_a_tampered_item_vector_file_is_refused(artifacts):
    path = next((artifacts / "bert4rec").glob("2026*"))
    with (path / "item_vectors.npy").open("r+b") as f:  # one float changed in place, same size
        f.seek(-4, os.SEEK_END)
        f.write(b"\x00\x00\x80\x7f")
    with pytest.raises(BundleError, match=r"item_vectors\.npy: sha256 mismatch"):
        load_bundle(path)


def test_a_bundle_of_the_older_format_is_refused_with_the_way_out(artifacts):
    path = next((artifacts / "bert4rec").glob("2026*"))
    manifest = json.loads((path / "manifest.json").read_text())
    (path / "manifest.json").write_text(json.dumps({**manifest, "format": "recserve-bundle/1"}))
    with pytest.raises(BundleError, match=r"found 'recserve-bundle/1' \(an older bundle: export its checkpoint again"):
        load_bundle(path)


def test_discover_and_latest(artifacts):
    found = discover(artifacts)
    assert sorted(found) == ["bert4rec", "convncf", "gru4recf", "nrms"]
    assert resolve_latest(found["nrms"]).name == "20260101T000000Z-00000001"
    (artifacts / "nrms" / "LATEST").write_text("nope\n")
    with pytest.raises(BundleError, match="LATEST: names 'nope'"):
        resolve_latest(found["nrms"])
    assert discover(artifacts / "missing") == {}


def test_hash_mismatch_is_refused_naming_the_file(artifacts):
    path = next((artifacts / "gru4recf").glob("2026*"))
    with (path / "user_encoder.onnx").open("ab") as f:
        f.write(b"\0")
    with pytest.raises(BundleError, match=r"user_encoder\.onnx: sha256 mismatch"):
        load_bundle(path)


def test_missing_file_and_bad_manifest_are_refused(artifacts):
    path = next((artifacts / "bert4rec").glob("2026*"))
    (path / "item_ids.npy").unlink()
    with pytest.raises(BundleError, match=r"item_ids\.npy: listed in manifest.json but unreadable"):
        load_bundle(path)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["scorer"] = "cosine"
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="unknown scorer 'cosine'"):
        load_bundle(path)


# --- Links out of the artifacts tree (docs/bundle.md, "Bundles you did not write") ---------------------------

def _move_out(folder, outside):
    """Move `folder` to `outside` and leave a symlink to it in its place."""
    outside.parent.mkdir(parents=True, exist_ok=True)
    folder.rename(outside)
    folder.symlink_to(outside, target_is_directory=True)


def test_version_folder_linking_out_of_the_model_folder_is_refused(artifacts, tmp_path):
    model_dir = artifacts / "bert4rec"
    version = resolve_latest(model_dir)
    outside = tmp_path / "elsewhere" / version.name
    _move_out(version, outside)
    with pytest.raises(BundleError) as err:
        resolve_latest(model_dir)
    assert str(version) in str(err.value) and f"links to {outside}" in str(err.value)
    assert "outside the model folder" in str(err.value)


def test_version_folder_linking_inside_its_model_folder_is_served(artifacts):
    model_dir = artifacts / "bert4rec"
    version = resolve_latest(model_dir)
    (model_dir / "current").symlink_to(version.name, target_is_directory=True)
    (model_dir / "LATEST").write_text("current\n")
    assert resolve_latest(model_dir) == model_dir / "current"
    assert load_bundle(model_dir / "current").model == "bert4rec"


def test_model_folder_linking_out_of_the_artifacts_folder_is_refused(artifacts, tmp_path):
    outside = tmp_path / "elsewhere" / "bert4rec"
    _move_out(artifacts / "bert4rec", outside)
    assert resolve_latest(artifacts / "bert4rec").name.startswith("2026")  # alone, a model folder is anywhere
    with pytest.raises(BundleError) as err:
        resolve_latest(artifacts / "bert4rec", artifacts)
    assert str(artifacts / "bert4rec") in str(err.value) and f"links to {outside}" in str(err.value)
    assert "outside the artifacts folder" in str(err.value)


def test_a_file_linking_out_of_the_bundle_is_refused_even_with_the_right_hash(artifacts, tmp_path):
    path = resolve_latest(artifacts / "bert4rec")
    copy = tmp_path / "history_items.npy"
    copy.write_bytes((path / "history_items.npy").read_bytes())  # same bytes, same sha256
    (path / "history_items.npy").unlink()
    (path / "history_items.npy").symlink_to(copy)
    with pytest.raises(BundleError) as err:
        load_bundle(path)
    assert str(path / "history_items.npy") in str(err.value) and f"links to {copy}" in str(err.value)
    assert "outside the bundle folder" in str(err.value)


def test_a_listed_file_that_is_not_a_regular_file_is_refused(artifacts):
    path = resolve_latest(artifacts / "bert4rec")
    (path / "history_items.npy").unlink()
    os.mkfifo(path / "history_items.npy")  # reading it would block forever
    outcome = []

    def load():
        try:
            load_bundle(path)
        except BundleError as exc:
            outcome.append(str(exc))

    reader = threading.Thread(target=load, daemon=True)  # a regression blocks this thread, not the suite
    reader.start()
    reader.join(30)
    assert outcome == [f"{path / 'history_items.npy'}: not a regular file"]


def test_a_loop_of_links_is_refused_not_a_crash(artifacts):
    model_dir = artifacts / "bert4rec"
    (model_dir / "a").symlink_to("b")
    (model_dir / "b").symlink_to("a")
    (model_dir / "LATEST").write_text("a\n")
    with pytest.raises(BundleError, match="LATEST: names 'a', which is not a folder"):
        resolve_latest(model_dir)
    path = resolve_latest(artifacts / "nrms")
    (path / "item_ids.npy").unlink()
    (path / "item_ids.npy").symlink_to("item_ids.npy")
    with pytest.raises(BundleError, match=r"item_ids\.npy: cannot follow its links"):
        load_bundle(path)


# --- The files each kind of bundle must have ---------------------------------------------------------------

def _leave_out(path, name):
    """Rewrite the bundle's manifest without `name` (and delete the file), as a careless exporter would."""
    manifest = json.loads((path / "manifest.json").read_text())
    del manifest["files"][name]
    (path / "manifest.json").write_text(json.dumps(manifest))
    (path / name).unlink()


@pytest.mark.parametrize("model, name, why", [
    ("bert4rec", "history_items.npy", "user_input 'sequence'"),
    ("gru4recf", "history_items.npy", "user_input 'sequence'"),
    ("nrms", "history_items.npy", "user_input 'news_vectors'"),
    ("convncf", "user_ids.npy", "user_input 'user_id'"),
    ("nrms", "tokenizer.json", "item input 'title_tokens'"),
    ("convncf", "item_ids.npy", "every bundle"),
    ("gru4recf", "item_inputs.npz", "every bundle"),
])
def test_a_bundle_without_a_file_its_kind_needs_is_refused(artifacts, model, name, why):
    path = resolve_latest(artifacts / model)
    _leave_out(path, name)
    with pytest.raises(BundleError) as err:
        load_bundle(path)
    assert str(err.value).startswith(f"{path / 'manifest.json'}: {name} is not listed under 'files'")
    assert why in str(err.value)


def test_every_tokenizer_input_needs_the_tokenizer():
    from bundle.contract import TOKENIZER_FILE, required_files
    from bundle.tokenizers import WordTokenizer

    for name in WordTokenizer.input_names:
        manifest = {"user_input": "news_vectors", "graphs": {"item_encoder": {"inputs": [{"name": name}]}}}
        assert TOKENIZER_FILE in required_files(manifest)
    assert TOKENIZER_FILE not in required_files({"user_input": "news_vectors",
                                                 "graphs": {"item_encoder": {"inputs": ["item_idx"]}}})


def test_a_latest_linking_out_of_the_model_folder_is_refused_unread(artifacts, tmp_path):
    model_dir = artifacts / "bert4rec"
    outside = tmp_path / "LATEST"
    outside.write_text((model_dir / "LATEST").read_text())
    (model_dir / "LATEST").unlink()
    (model_dir / "LATEST").symlink_to(outside)
    assert discover(artifacts)["bert4rec"] == model_dir  # found, so that the refusal is reported
    with pytest.raises(BundleError, match=f"LATEST: links to {outside}, outside the model folder"):
        resolve_latest(model_dir)


def test_older_versions_newest_first_and_only_bundles_inside(artifacts, tmp_path):
    model_dir = artifacts / "bert4rec"
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "manifest.json").write_text("{}")
    for name in ("20251201T000000Z-a", "20251231T000000Z-b", "20260102T000000Z-c", ".tmp-20251231T120000Z-d-1",
                 "train"):
        (model_dir / name).mkdir()
        (model_dir / name / "manifest.json").write_text("{}")
    (model_dir / "20251230T000000Z-nomanifest").mkdir()
    (model_dir / "20251231T060000Z-link").symlink_to(tmp_path / "out", target_is_directory=True)
    (model_dir / "20251230T120000Z-inside").symlink_to("20251201T000000Z-a", target_is_directory=True)
    latest = resolve_latest(model_dir).name  # 20260101T000000Z-00000001
    names = [p.name for p in older_versions(model_dir, latest)]
    assert names == ["20251231T000000Z-b", "20251230T120000Z-inside", "20251201T000000Z-a"]
    assert [p.name for p in older_versions(model_dir, "")][:3] == ["train", "20260102T000000Z-c", latest]


def test_the_index_mapped_is_the_one_whose_hash_was_checked_even_if_replaced_since(artifacts):
    """The index is mapped through the descriptor the hash check read (Linux: /proc/self/fd), not reopened by
    name: a file put in its place between the check and the mapping is not the one searched."""
    import numpy as np

    from bundle.ann import build_index, load_index

    path = next((artifacts / "bert4rec").glob("2026*"))
    bundle = load_bundle(path)
    info = bundle.manifest["index"]
    before = load_index(path / info["file"], info, 200)
    other = build_index(-np.asarray(bundle.item_vectors), path.parent / "other.usearch", threads=1)
    os.replace(path.parent / "other.usearch", path / info["file"])
    queries = np.random.default_rng(0).standard_normal((5, bundle.dim)).astype(np.float32)
    by_name = load_index(path / info["file"], {**info, "bytes": other["bytes"]}, 200)
    assert any(by_name.search(q, 10).tolist() != before.search(q, 10).tolist() for q in queries)  # it differs
    mapped = load_index(path / info["file"], info, 200, bundle.index_file)
    assert all(mapped.search(q, 10).tolist() == before.search(q, 10).tolist() for q in queries)
