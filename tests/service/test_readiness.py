"""Start-up on an artifacts folder that gives no model: a warning naming the folder and what was expected in
it, and a /readyz 503 that says the same."""
from __future__ import annotations

import logging
import shutil

import pytest

EXPECTED = "expected <artifacts>/<model>/LATEST naming a bundle version"


def _setups(tmp_path, bundles):
    """name -> (artifacts path to serve, words the reason must contain)."""
    empty = tmp_path / "empty"
    empty.mkdir()
    stray = tmp_path / "stray"
    (stray / "nrms" / "train").mkdir(parents=True)  # trained but never exported: no LATEST
    model_folder = tmp_path / "arts"
    shutil.copytree(bundles[0] / "gru4recf", model_folder / "gru4recf")
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    return {
        "missing": (tmp_path / "artifcats", [f"artifacts folder {tmp_path / 'artifcats'} does not exist"]),
        "empty": (empty, [f"no model folders with a LATEST file under {empty}"]),
        "stray": (stray, [f"no model folders with a LATEST file under {stray}", "its folders nrms have none"]),
        "model folder": (model_folder / "gru4recf",
                         [f"{model_folder / 'gru4recf'} is a model folder", f"serve its parent {model_folder}"]),
        "a file": (a_file, [f"artifacts folder {a_file} is not a folder"]),
    }


@pytest.mark.parametrize("case", ["missing", "empty", "stray", "model folder", "a file"])
def test_no_model_found_is_a_warning_and_the_readyz_reason(make_client, bundles, tmp_path, caplog, case):
    folder, words = _setups(tmp_path, bundles)[case]
    with caplog.at_level(logging.WARNING, logger="recserve.registry"):
        client = make_client(artifacts=folder)
    (warning,) = [r for r in caplog.records if r.name == "recserve.registry"]
    assert warning.levelno == logging.WARNING
    assert all(w in warning.getMessage() for w in words) and EXPECTED in warning.getMessage()
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json() == {"status": "not ready", "models": {}, "failed": {}, "fallbacks": {}, "cache": "in-process",
                            "reason": warning.getMessage()}


def test_reload_warns_again_and_readiness_follows_the_folder(make_client, bundles, tmp_path, caplog):
    folder = tmp_path / "artifacts"
    client = make_client(artifacts=folder)  # mistyped at start: the folder is created later
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="recserve.registry"):
        client.post("/admin/reload")
    assert f"artifacts folder {folder} does not exist" in caplog.text
    shutil.copytree(bundles[0] / "gru4recf", folder / "gru4recf")
    assert client.post("/admin/reload").json()["loaded"].keys() == {"gru4recf"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and "reason" not in ready.json()


def test_a_redis_that_never_answered_is_an_error_at_start_and_keeps_the_replica_not_ready(make_client, caplog):
    from tests.service.processes import free_port

    url = f"redis://me:secret@127.0.0.1:{free_port()}/0"
    shown = url.replace(":secret@", ":***@")
    with caplog.at_level(logging.ERROR, logger="recserve"):
        client = make_client(redis_url=url)
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and shown in errors[0] and "RECSERVE_REDIS_URL" in errors[0]
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json()["cache"] == "degraded", ready.text
    assert shown in ready.json()["reason"] and "secret" not in ready.text
    rank = {"model": "bert4rec", "user_id": "u1", "candidates": ["i1"]}
    assert client.post("/rank", json=rank).status_code == 200  # reads fail open


def test_without_waiting_for_redis_the_replica_is_ready_and_says_why_it_is_degraded(make_client):
    from tests.service.processes import free_port

    port = free_port()
    ready = make_client(redis_url=f"redis://127.0.0.1:{port}/0", wait_for_redis=False).get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "degraded"
    assert f"127.0.0.1:{port}" in ready.json()["reason"]
