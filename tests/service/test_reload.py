"""Hot reload: newer bundles swap in atomically; bad ones are refused while the old version keeps serving."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import httpx

from tests.service.bundles import build

V2 = "20260102T000000Z-00000002"
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
    assert client.post("/rank", json=RANK).json() == old
    assert client.get("/readyz").status_code == 200
    assert 'recserve_reloads_total{model="gru4recf",outcome="refused"} 1.0' in client.get("/metrics").text


def test_bad_bundle_at_start_is_refused_and_reported(make_client, artifacts):
    latest = (artifacts / "bert4rec" / "LATEST").read_text().strip()
    (artifacts / "bert4rec" / latest / "histories.json").write_text("{}")
    client = make_client(artifacts=artifacts)
    ready = client.get("/readyz")
    assert ready.status_code == 503 and "histories.json: sha256 mismatch" in ready.json()["failed"]["bert4rec"]
    reason = ready.json()["reason"]
    assert reason.startswith("bundles refused: bert4rec: ") and "histories.json: sha256 mismatch" in reason
    assert client.post("/rank", json={**RANK, "model": "bert4rec"}).status_code == 404
    assert client.post("/rank", json=RANK).status_code == 200


def test_server_process_reloads_on_sighup(artifacts):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = f"from service.server import serve; serve({str(artifacts)!r}, '127.0.0.1', {port}, 1)"
    env = {**os.environ, "RECSERVE_REDIS_URL": "", "RECSERVE_LOG_LEVEL": "warning"}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        def wait_for(check):
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    if check():
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
            raise AssertionError("timed out")

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
    del manifest["files"]["histories.json"]  # known users would get 422 "unknown user"
    (path / "manifest.json").write_text(json.dumps(manifest))
    client = make_client(artifacts=artifacts)
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["failed"]["bert4rec"] == (
        f"{path / 'manifest.json'}: histories.json is not listed under 'files' (user_input 'sequence' needs "
        "it: the users' histories)")
    assert client.post("/rank", json={**RANK, "model": "bert4rec"}).status_code == 404
