"""Hot reload: newer bundles swap in atomically; bad ones are refused while the old version keeps serving."""
import json
import logging
import os
import shutil
import signal
import subprocess
import sys

import httpx

from tests.service.bundles import build
from tests.service.processes import free_port, wait_for
from tests.service.answers import ranking

V0, V1, V1B = "20251231T000000Z-00000000", "20260101T000000Z-00000001", "20260101T120000Z-0000001b"
V2, V3, V4 = "20260102T000000Z-00000002", "20260103T000000Z-00000003", "20260104T000000Z-00000004"
RANK = {"model": "gru4recf", "user_id": "u1", "candidates": ["i1", "i2", "i3", "i4"]}


def test_reload_swaps_in_the_newer_version(make_client, artifacts):
    client = make_client(artifacts=artifacts)
    old_models = client.app.state.registry.models
    old = client.post("/rank", json=RANK).json()
    newer = build(artifacts, "gru4recf", version=V2, seed=3)
    r = client.post("/admin/reload")
    assert r.status_code == 200
    assert r.json()["loaded"] == {"gru4recf": V2} and "nrms" in r.json()["unchanged"]
    body = client.post("/rank", json=RANK).json()
    assert body["version"] == V2 and body["results"] != old["results"]
    user = newer.expected_user(newer.histories["u1"])
    want = dict(zip(RANK["candidates"], newer.expected_scores(user, newer.item_matrix()[[1, 2, 3, 4]])))
    assert all(abs(x["score"] - want[x["item_id"]]) < 1e-4 for x in body["results"])
    assert old_models["gru4recf"].version != V2  # a request holding the old dict keeps the old model
    assert client.app.state.registry.models["nrms"] is old_models["nrms"]  # unchanged bundles are not reloaded


def test_corrupted_newer_bundle_is_refused_and_the_old_keeps_serving(make_client, artifacts):
    client = make_client(artifacts=artifacts)
    old = client.post("/rank", json=RANK).json()
    newer = build(artifacts, "gru4recf", version=V2, seed=3)
    with (newer.path / "item_encoder.onnx").open("r+b") as f:
        f.write(b"garbage")
    r = client.post("/admin/reload")
    assert r.status_code == 409
    assert "item_encoder.onnx: sha256 mismatch" in r.json()["detail"] and "gru4recf" in r.json()["refused"]
    assert ranking(client.post("/rank", json=RANK)) == ranking(old)
    ready = client.get("/readyz")  # as before: the old version serves, and is no fallback (it was LATEST's)
    assert ready.status_code == 200 and ready.json()["status"] == "ready" and ready.json()["fallbacks"] == {}
    assert all(m["fallback_from"] is None for m in client.get("/models").json())
    assert 'recserve_reloads_total{model="gru4recf",outcome="refused"} 1.0' in client.get("/metrics").text


def test_bad_bundle_at_start_is_refused_and_reported(make_client, artifacts):
    latest = (artifacts / "bert4rec" / "LATEST").read_text().strip()
    (artifacts / "bert4rec" / latest / "history_items.npy").write_text("{}")
    client = make_client(artifacts=artifacts)
    ready = client.get("/readyz")
    assert ready.status_code == 503 and "history_items.npy: sha256 mismatch" in ready.json()["failed"]["bert4rec"]
    reason = ready.json()["reason"]
    assert reason.startswith("bundles refused: bert4rec: ") and "history_items.npy: sha256 mismatch" in reason
    assert client.post("/rank", json={**RANK, "model": "bert4rec"}).status_code == 404
    assert client.post("/rank", json=RANK).status_code == 200


def test_server_process_reloads_on_sighup(artifacts):
    port = free_port()
    code = f"from service.server import serve; serve({str(artifacts)!r}, '127.0.0.1', {port}, 1)"
    env = {**os.environ, "RECSERVE_REDIS_URL": "", "RECSERVE_LOG_LEVEL": "warning"}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: httpx.get(f"{url}/readyz").status_code == 200)
        build(artifacts, "gru4recf", version=V2, seed=3)
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: httpx.post(f"{url}/rank", json=RANK).json()["version"] == V2)
    finally:
        proc.terminate()
        proc.wait(10)


def test_a_bundle_linking_out_of_the_tree_is_refused_at_start(make_client, artifacts, tmp_path):
    version = artifacts / "bert4rec" / (artifacts / "bert4rec" / "LATEST").read_text().strip()
    outside = tmp_path / "elsewhere" / version.name
    outside.parent.mkdir()
    version.rename(outside)
    version.symlink_to(outside, target_is_directory=True)
    model_folder = artifacts / "gru4recf"
    build(artifacts, "gru4recf", version=V0, seed=1)  # older and good: not served either
    (model_folder / "LATEST").write_text(V1 + "\n")
    model_folder.rename(tmp_path / "elsewhere" / "gru4recf")
    model_folder.symlink_to(tmp_path / "elsewhere" / "gru4recf", target_is_directory=True)
    client = make_client(artifacts=artifacts)
    ready = client.get("/readyz")
    assert ready.status_code == 503
    failed = ready.json()["failed"]
    assert failed.keys() == {"bert4rec", "gru4recf"}
    assert str(version) in failed["bert4rec"] and "outside the model folder" in failed["bert4rec"]
    assert str(model_folder) in failed["gru4recf"] and "outside the artifacts folder" in failed["gru4recf"]
    assert client.post("/rank", json=RANK).status_code == 404
    assert client.post("/rank", json={**RANK, "model": "bert4rec"}).status_code == 404


def test_a_bundle_without_the_histories_it_needs_is_refused_at_start(make_client, artifacts):
    path = artifacts / "bert4rec" / (artifacts / "bert4rec" / "LATEST").read_text().strip()
    manifest = json.loads((path / "manifest.json").read_text())
    del manifest["files"]["history_items.npy"]  # known users would get 422 "unknown user"
    (path / "manifest.json").write_text(json.dumps(manifest))
    client = make_client(artifacts=artifacts)
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["failed"]["bert4rec"] == (
        f"{path / 'manifest.json'}: history_items.npy is not listed under 'files' (user_input 'sequence' needs "
        "it: the users' histories)")
    assert client.post("/rank", json={**RANK, "model": "bert4rec"}).status_code == 404


# --- Falling back to an older version when LATEST's is refused and nothing serves the model ------------------



def _corrupt(path):
    with (path / "item_encoder.onnx").open("r+b") as f:
        f.write(b"garbage")


def test_start_falls_back_to_the_newest_older_version_that_loads(make_client, artifacts, caplog):
    folder = artifacts / "gru4recf"
    build(artifacts, "gru4recf", version=V0, seed=1)  # older than V1: V1 is the newest that loads
    build(artifacts, "gru4recf", version=V3, seed=4)  # newer than LATEST's: LATEST may have been rolled back from it
    _corrupt(build(artifacts, "gru4recf", version=V2, seed=3).path)  # LATEST names V2
    with caplog.at_level(logging.WARNING, logger="recserve.registry"):
        client = make_client(artifacts=artifacts)
    assert client.post("/rank", json=RANK).json()["version"] == V1
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any(f"LATEST names {V2!r}, which was refused" in m and f"serving the older version {V1}" in m
               for m in said), said

    ready = client.get("/readyz")
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "degraded" and body["models"]["gru4recf"] == V1 and body["failed"] == {}
    assert body["fallbacks"].keys() == {"gru4recf"}
    fallback = body["fallbacks"]["gru4recf"]
    assert (fallback["serving"], fallback["latest"]) == (V1, V2)
    assert fallback["reason"].startswith(f"{folder / V2 / 'item_encoder.onnx'}: sha256 mismatch")
    assert body["reason"].startswith(f"serving older versions: gru4recf serves {V1}: LATEST's {V2} was refused: ")
    models = {m["name"]: m for m in client.get("/models").json()}
    assert models["gru4recf"]["version"] == V1 and models["gru4recf"]["fallback_from"] == V2
    assert "item_encoder.onnx: sha256 mismatch" in models["gru4recf"]["fallback_reason"]
    assert all(m["fallback_from"] is None and m["fallback_reason"] is None for n, m in models.items() if n != "gru4recf")

    # A reload with LATEST's still refused: the fallback keeps serving, and says so.
    r = client.post("/admin/reload")
    assert r.status_code == 409 and "gru4recf" in r.json()["refused"]
    assert client.post("/rank", json=RANK).json()["version"] == V1
    assert client.get("/readyz").json()["fallbacks"]["gru4recf"]["serving"] == V1
    # A newer good version, still older than LATEST's, is what a restart would serve: a reload serves it too.
    build(artifacts, "gru4recf", version=V1B, seed=5)
    (folder / "LATEST").write_text(V2 + "\n")
    assert client.post("/admin/reload").status_code == 409
    assert client.post("/rank", json=RANK).json()["version"] == V1B
    assert client.get("/readyz").json()["fallbacks"]["gru4recf"]["serving"] == V1B
    # LATEST names a version that loads: no fallback any more.
    build(artifacts, "gru4recf", version=V4, seed=6)
    assert client.post("/admin/reload").json()["loaded"] == {"gru4recf": V4}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready" and ready.json()["fallbacks"] == {}
    assert "reason" not in ready.json()
    assert all(m["fallback_from"] is None for m in client.get("/models").json())


def test_no_older_version_that_loads_is_a_refusal_as_before(make_client, artifacts, caplog):
    folder = artifacts / "gru4recf"
    shutil.copytree(folder / V1, folder / ".tmp-20260101T060000Z-00000009-123")  # an export being written: never served
    _corrupt(folder / V1)
    _corrupt(build(artifacts, "gru4recf", version=V2, seed=3).path)
    with caplog.at_level(logging.WARNING, logger="recserve.registry"):
        client = make_client(artifacts=artifacts)
    ready = client.get("/readyz")
    assert ready.status_code == 503
    body = ready.json()
    assert body["status"] == "not ready" and body["fallbacks"] == {} and "gru4recf" not in body["models"]
    assert body["failed"]["gru4recf"].startswith(f"{folder / V2 / 'item_encoder.onnx'}: sha256 mismatch")
    assert body["reason"].startswith("bundles refused: gru4recf: ")
    assert client.post("/rank", json=RANK).status_code == 404
    said = caplog.text
    assert f"refused older bundle of gru4recf too: {folder / V1 / 'item_encoder.onnx'}: sha256 mismatch" in said
    assert f"gru4recf: no older version under {folder} loads either" in said

    # A reload finds a good older version placed since: the model serves again, as a fallback.
    build(artifacts, "gru4recf", version=V1B, seed=5)
    (folder / "LATEST").write_text(V2 + "\n")
    assert client.post("/admin/reload").status_code == 409
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "degraded"
    assert ready.json()["fallbacks"]["gru4recf"]["serving"] == V1B and ready.json()["failed"] == {}
    assert client.post("/rank", json=RANK).json()["version"] == V1B


def test_the_imports_are_frozen_and_a_replaced_models_cycles_are_still_collected(make_client, artifacts):
    """The app freezes what the imports left before its models load (the collector's full passes skip it);
    the models are not frozen, so one that a reload replaces is freed even when reference cycles hold it."""
    import gc
    import weakref

    client = make_client(artifacts=artifacts)
    assert gc.get_freeze_count() > 0
    model = client.app.state.registry.models["gru4recf"]
    model.cycle = model  # a reference cycle: only the collector frees it, and never while frozen
    gone = weakref.ref(model)
    build(artifacts, "gru4recf", version=V2, seed=3)
    assert client.post("/admin/reload").json()["loaded"] == {"gru4recf": V2}
    del model
    gc.collect()
    assert gone() is None
