"""What the service records of its traffic (issue #29): request ids, impressions, attributed events, added items,
the online counters, and that none of it holds up or fails a request when the sink is down."""
from __future__ import annotations

import json
import logging
import subprocess
import time

import orjson
import pytest
import redis

from service.feedback import columns, records
from tests.service.bundles import MAX_HISTORY
from tests.service.conftest import REDIS_URL
from tests.service.processes import free_port, wait_for


def expanded(record: dict) -> list[dict]:
    """A logged record as readers see it: an "impressions" record (the answers in columns) as its impressions."""
    return list(columns.expand(record)) if record["type"] == "impressions" else [record]


def logged(folder) -> list[dict]:
    """Every record in the files sink's folder, in file and line order (answers' records after the others
    of their batch)."""
    return [r for path in sorted(folder.glob("records-*.jsonl"))
            for line in path.read_text().splitlines() for r in expanded(json.loads(line))]


def wait_records(folder, count: int) -> list[dict]:
    wait_for(lambda: len(logged(folder)) >= count, timeout_s=10)
    return logged(folder)


def metric(client, name: str, **labels) -> float:
    """The value of one sample of /metrics (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        sample, _, rest = head.partition("{")
        if sample == name and ",".join(sorted(rest.rstrip("}").split(","))) == want:
            return float(value)
    return 0.0


def test_answers_carry_a_request_id_in_body_and_header(make_client, tmp_path):
    client = make_client(feedback_dir=tmp_path)
    first = client.post("/rank", json={"model": "nrms", "user_id": "u1", "candidates": ["N1", "N2"]})
    second = client.post("/recommend", json={"model": "bert4rec", "user_id": "u1", "k": 3})
    ids = [r.json()["request_id"] for r in (first, second)]
    assert [r.headers["x-request-id"] for r in (first, second)] == ids
    assert len(set(ids)) == 2 and all(len(i) == 32 for i in ids)
    own = client.post("/rank", json={"model": "nrms", "user_id": "u1", "candidates": ["N1"]},
                      headers={"X-Request-ID": "trace-42/abc"})
    assert own.json()["request_id"] == own.headers["x-request-id"] == "trace-42/abc"


@pytest.mark.parametrize("bad", ["has space", "x" * 129, "tab\there"])
def test_an_unusable_client_request_id_is_refused_naming_the_header(make_client, tmp_path, bad):
    client = make_client(feedback_dir=tmp_path)
    r = client.post("/rank", json={"model": "nrms", "user_id": "u1", "candidates": ["N1"]},
                    headers={"X-Request-ID": bad})
    assert r.status_code == 422 and r.json()["field"] == "X-Request-ID"


def test_impressions_record_what_was_shown(make_client, models, tmp_path):
    client, nrms = make_client(feedback_dir=tmp_path), models["nrms"]
    ranked = client.post("/rank", json={"model": "nrms", "user_id": "u1", "candidates": ["N3", "N1", "nope", "N2"]}).json()
    recommended = client.post("/recommend", json={"model": "gru4recf", "history": ["i1", "i2", "zz"], "k": 4}).json()
    cold = client.post("/recommend", json={"model": "bert4rec", "user_id": "stranger", "k": 2}).json()
    rank, rec, fallback = wait_records(tmp_path, 3)
    assert rank["type"] == "impression" and rank["v"] == records.SCHEMA_VERSION
    assert {k: rank[k] for k in ("request_id", "user", "model", "kind", "version", "arm", "route", "fallback",
                                 "shadow")} == {
        "request_id": ranked["request_id"], "user": "u1", "model": "nrms", "kind": "nrms",
        "version": ranked["version"], "arm": "default", "route": "rank", "fallback": None, "shadow": False}
    assert rank["items"] == [r["item_id"] for r in ranked["results"]]
    assert rank["scores"] == pytest.approx([r["score"] for r in ranked["results"]])
    window = nrms.histories["u1"][-MAX_HISTORY:]
    assert rank["history"] == window and rank["history_len"] == len(nrms.histories["u1"])
    assert abs(rank["ts"] - time.time()) < 30
    assert rec["route"] == "recommend" and rec["user"] is None and rec["history"] == ["i1", "i2"]
    assert rec["history_len"] == 2 and rec["items"] == [r["item_id"] for r in recommended["results"]]
    assert fallback["fallback"] == cold["fallback"] == "popularity" and fallback["history"] == []
    assert fallback["items"] == [r["item_id"] for r in cold["results"]]


def test_events_are_recorded_and_attributed_clicks_counted_by_position(make_client, tmp_path):
    client = make_client(feedback_dir=tmp_path, feedback_flush_s=0.05)
    answer = client.post("/rank", json={"model": "nrms", "user_id": "u1", "candidates": ["N1", "N2", "N3"]}).json()
    shown = [r["item_id"] for r in answer["results"]]
    wait_records(tmp_path, 1)  # the answer's summary is kept for attribution with the recorder's batch
    labels = {"model": "nrms", "version": answer["version"], "arm": "default"}
    r = client.post("/users/u1/events", json={"model": "nrms", "items": [shown[1]],
                                              "request_id": answer["request_id"]})
    assert r.status_code == 200
    client.post("/users/u1/events", json={"items": [shown[0]], "event": "purchase"})
    _, clicked, bought = wait_records(tmp_path, 3)
    assert {k: clicked[k] for k in ("type", "user", "model", "event", "items", "request_id")} == {
        "type": "event", "user": "u1", "model": "nrms", "event": "click", "items": [shown[1]],
        "request_id": answer["request_id"]}
    assert bought["event"] == "purchase" and bought["request_id"] is None and bought["model"] is None
    assert metric(client, "recserve_impressions_total", fallback="false", **labels) == 1
    assert metric(client, "recserve_items_shown_total", **labels) == 3
    assert metric(client, "recserve_attributed_clicks_total", **labels) == 1
    assert metric(client, "recserve_clicked_position_bucket", le="1.0", **labels) == 0
    assert metric(client, "recserve_clicked_position_bucket", le="2.0", **labels) == 1
    assert metric(client, "recserve_events_total", event="purchase", attributed="false") == 1
    assert metric(client, "recserve_events_total", event="click", attributed="true") == 1


def test_an_event_type_must_be_a_lowercase_word(make_client, tmp_path):
    r = make_client(feedback_dir=tmp_path).post("/users/u1/events", json={"items": ["N1"], "event": "Click!"})
    assert r.status_code == 422 and r.json()["field"] == "event"


def test_a_salt_records_users_as_hashes_that_still_join(make_client, tmp_path):
    client = make_client(feedback_dir=tmp_path, feedback_user_salt="pepper")
    answer = client.post("/rank", json={"model": "nrms", "user_id": "u1", "candidates": ["N1"]}).json()
    client.post("/users/u1/events", json={"items": ["N1"], "request_id": answer["request_id"]})
    impression, event = wait_records(tmp_path, 2)
    assert impression["user"] == event["user"] == records.hashed_user("u1", "pepper")
    assert impression["user"].startswith("h:")
    assert '"u1"' not in "".join(path.read_text() for path in tmp_path.glob("records-*.jsonl"))
    assert records.hashed_user("u1", "other") != impression["user"]


def test_added_items_are_recorded_with_their_raw_inputs(make_client, tmp_path):
    client = make_client(feedback_dir=tmp_path)
    client.post("/items", json={"model": "nrms", "items": [{"item_id": "NEW", "title": "w1 w2", "category": "c"}]})
    (item,) = wait_records(tmp_path, 1)
    assert {k: item[k] for k in ("type", "model", "item_id", "title", "category")} == {
        "type": "item", "model": "nrms", "item_id": "NEW", "title": "w1 w2", "category": "c"}


def impressions(client) -> float:
    """recserve_impressions_total over every label."""
    return sum(float(line.rpartition(" ")[2]) for line in client.get("/metrics").text.splitlines()
               if line.startswith("recserve_impressions_total{"))


def test_sampling_keeps_whole_users_the_same_in_every_process(make_client, tmp_path):
    """Below 1, RECSERVE_FEEDBACK_SAMPLE keeps a fixed share of users, all their answers, and the same users in
    every process (two apps here, as two workers or replicas); requests without a user_id are drawn one by one."""
    users = [f"v{i}" for i in range(200)]
    kept = []
    for name in ("one", "two"):
        client = make_client(feedback_dir=tmp_path / name, feedback_sample=0.25, feedback_flush_s=0.05)
        for user in users:
            for _ in range(2):
                answer = client.post("/rank", json={"model": "nrms", "user_id": user, "candidates": ["N1"]})
                assert answer.status_code == 200
        counted = impressions(client)
        answers = wait_records(tmp_path / name, int(counted))
        time.sleep(0.2)
        assert len(logged(tmp_path / name)) == counted  # every answer counted is recorded, and no other
        per_user = {u: sum(r["user"] == u for r in answers) for u in users}
        assert set(per_user.values()) == {0, 2}  # a user's answers: all or none
        kept.append({u for u, n in per_user.items() if n})
    assert 25 <= len(kept[0]) <= 75  # 50 expected; 4 standard deviations either side
    assert kept[0] == kept[1]

    client = make_client(feedback_dir=tmp_path / "anonymous", feedback_sample=0.25, feedback_flush_s=0.05)
    for _ in range(400):
        answer = client.post("/rank", json={"model": "nrms", "history": ["N2"], "candidates": ["N1"]})
        assert answer.status_code == 200
    assert 50 <= impressions(client) <= 150  # 100 expected; 5 standard deviations either side


def test_off_records_nothing_but_still_counts(make_client, tmp_path):
    client = make_client(feedback_dir=tmp_path, feedback_sink="off", feedback_flush_s=0.05)
    answer = client.post("/rank", json={"model": "nrms", "user_id": "u1", "candidates": ["N1"]})
    assert answer.status_code == 200 and answer.json()["request_id"]
    time.sleep(0.5)
    assert logged(tmp_path) == []
    assert 'recserve_impressions_total{arm="default"' in client.get("/metrics").text


def test_redis_sink_writes_batches_to_the_stream(make_client, redis_prefix, redis_client):
    client = make_client(redis_url=REDIS_URL, cache_prefix=redis_prefix)
    ids = [client.post("/rank", json={"model": "nrms", "user_id": "u1", "candidates": ["N1", "N2"]}).json()[
        "request_id"] for _ in range(5)]
    key = records.stream_key(redis_prefix)

    def stream() -> list[dict]:
        return [r for _, fields in redis_client.xrange(key)
                for line in fields[records.STREAM_FIELD].split(b"\n") for r in expanded(orjson.loads(line))]

    wait_for(lambda: len(stream()) == 5, timeout_s=10)
    assert [r["request_id"] for r in stream()] == ids
    assert redis_client.xlen(key) < 5  # batched: fewer entries than records


def test_a_click_on_another_replica_is_attributed(make_client, redis_prefix):
    """Answer on one app, click on another sharing the Redis: the second counts the click by the answer's
    model, version and position."""
    settings = {"redis_url": REDIS_URL, "cache_prefix": redis_prefix, "feedback_flush_s": 0.05}
    one, two = make_client(**settings), make_client(**settings)
    answer = one.post("/recommend", json={"model": "bert4rec", "user_id": "u1", "k": 5}).json()
    time.sleep(0.5)  # the summary goes with the recorder's next batch
    third = answer["results"][2]["item_id"]
    two.post("/users/u1/events", json={"model": "bert4rec", "items": [third], "request_id": answer["request_id"]})
    labels = {"model": "bert4rec", "version": answer["version"], "arm": "default"}
    assert metric(two, "recserve_attributed_clicks_total", **labels) == 1
    assert metric(two, "recserve_clicked_position_bucket", le="2.0", **labels) == 0
    assert metric(two, "recserve_clicked_position_bucket", le="3.0", **labels) == 1
    assert metric(two, "recserve_events_total", event="click", attributed="true") == 1


def test_a_sink_down_drops_and_counts_and_recording_resumes(make_client, tmp_path):
    """A Redis of the log's own, stopped mid-run: every request is answered, the records that could not be
    written are counted as dropped, and recording resumes when it is back."""
    port = free_port()
    server = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen(server, stdout=subprocess.DEVNULL)
    log_url = f"redis://127.0.0.1:{port}/0"
    log_redis = redis.Redis.from_url(log_url, socket_timeout=1)

    def up() -> bool:
        try:
            return log_redis.ping()
        except redis.ConnectionError:
            return False

    wait_for(up)
    key = records.stream_key("fb")
    client = make_client(feedback_redis_url=log_url, cache_prefix="fb", feedback_sink="redis", redis_retry_s=0.2)
    rank = {"model": "nrms", "user_id": "u1", "candidates": ["N1", "N2"]}
    try:
        assert client.post("/rank", json=rank).status_code == 200
        wait_for(lambda: log_redis.exists(key))
        proc.terminate()
        proc.wait(10)
        answers = [client.post("/rank", json=rank).status_code for _ in range(50)]
        assert answers == [200] * 50
        wait_for(lambda: metric(client, "recserve_log_dropped_total", reason="sink_error") > 0, timeout_s=15)
        proc = subprocess.Popen(server, stdout=subprocess.DEVNULL)
        wait_for(up)
        after = client.post("/rank", json=rank).json()["request_id"]

        def written() -> bool:
            lines = [r for _, f in log_redis.xrange(key) for line in f[b"r"].split(b"\n")
                     for r in expanded(orjson.loads(line))]
            return after in [r["request_id"] for r in lines]

        wait_for(written, timeout_s=15)
    finally:
        proc.terminate()
        proc.wait(10)


def test_access_log_lines_name_the_request_id(make_client, tmp_path, caplog):
    client = make_client(feedback_dir=tmp_path, access_log=True)
    with caplog.at_level(logging.INFO, logger="recserve.access"):
        answer = client.post("/rank", json={"model": "nrms", "user_id": "u1", "candidates": ["N1"]}).json()
        client.get("/healthz")
    lines = [r.getMessage() for r in caplog.records if r.name == "recserve.access"]
    assert len(lines) == 2
    assert '"POST /rank" 200' in lines[0] and lines[0].endswith(answer["request_id"])
    assert '"GET /healthz" 200' in lines[1] and lines[1].endswith(" -")


def test_no_access_log_by_default(make_client, tmp_path, caplog):
    client = make_client(feedback_dir=tmp_path)
    with caplog.at_level(logging.INFO, logger="recserve.access"):
        client.get("/healthz")
    assert not [r for r in caplog.records if r.name == "recserve.access"]


def test_a_malformed_feedback_redis_url_is_a_settings_error_naming_it(monkeypatch):
    from service.config import SettingsError, load_settings

    monkeypatch.setenv("RECSERVE_FEEDBACK_REDIS_URL", "http://nope")
    with pytest.raises(SettingsError, match="RECSERVE_FEEDBACK_REDIS_URL='http://nope': a Redis URL must look like"):
        load_settings()


def test_a_feedback_folder_that_cannot_be_written_leaves_the_service_serving(make_client, tmp_path, caplog):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the folder should be")
    with caplog.at_level(logging.ERROR, logger="recserve.feedback"):
        client = make_client(feedback_dir=blocker / "log")
    answer = client.post("/rank", json={"model": "nrms", "user_id": "u1", "candidates": ["N1"]})
    assert answer.status_code == 200 and answer.json()["request_id"]
    assert any("cannot write under" in r.getMessage() for r in caplog.records)
