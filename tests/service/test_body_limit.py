"""Request bodies over RECSERVE_MAX_BODY_BYTES are refused with 413 before the app reads them, on every route."""
from __future__ import annotations

import json

import pytest

LIMIT = 1_048_576  # the default
JSON = {"content-type": "application/json"}
DETAIL = f"the request body exceeds the limit of {LIMIT} bytes (RECSERVE_MAX_BODY_BYTES)"
ROUTES = ["/rank", "/recommend", "/items", "/users/u1/events"]  # the hot routes and two through the router
CHUNK = 65_536
RANK = {"model": "nrms", "user_id": "u1", "candidates": ["N1", "N2"]}


def padded(body: dict, size: int) -> bytes:
    """`body` as JSON of exactly `size` bytes (trailing whitespace)."""
    raw = json.dumps(body).encode()
    return raw + b" " * (size - len(raw))


def post_chunked(client, path: str, body: bytes, headers: dict[str, str] = JSON) -> tuple[int, dict, int]:
    """POST `body` in CHUNK-sized messages with no Content-Length, as a chunked request arrives; straight to
    the ASGI app, since TestClient reads a streamed body whole first. -> (status, JSON answer, bytes pulled)."""
    pulled, sent = 0, []

    async def receive():
        nonlocal pulled
        chunk = body[pulled:pulled + CHUNK]
        pulled += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": pulled < len(body)}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"",
             "headers": [(k.encode(), v.encode()) for k, v in {**headers, "transfer-encoding": "chunked"}.items()],
             "client": ("127.0.0.1", 1), "server": ("testserver", 80), "state": {}}
    client.portal.call(client.app, scope, receive, send)
    start, = (m for m in sent if m["type"] == "http.response.start")
    answer = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], json.loads(answer), pulled


@pytest.mark.parametrize("path", ROUTES)
def test_a_body_over_the_limit_is_refused_unread(reading_client, path):
    client, reads = reading_client()
    answer = client.post(path, content=b" " * (2 * LIMIT), headers=JSON)
    assert answer.status_code == 413 and answer.json() == {"detail": DETAIL, "field": None}
    assert reads.bytes == 0


@pytest.mark.parametrize("path", ROUTES)
def test_a_chunked_body_is_counted_and_stopped_at_the_limit(client, path):
    status, answer, pulled = post_chunked(client, path, b" " * (4 * LIMIT))
    assert status == 413 and answer == {"detail": DETAIL, "field": None}
    assert pulled <= LIMIT + CHUNK  # the message that crossed the limit, and no more


def test_bodies_up_to_the_limit_are_served(make_client):
    client = make_client()  # the events change a history
    answer = client.post("/rank", content=padded(RANK, LIMIT), headers=JSON)
    assert answer.status_code == 200 and answer.json()["results"]
    assert client.post("/rank", content=padded(RANK, LIMIT + 1), headers=JSON).status_code == 413
    status, answer, _ = post_chunked(client, "/rank", padded(RANK, LIMIT))
    assert status == 200 and answer["results"]
    status, _, _ = post_chunked(client, "/users/u1/events", padded({"model": "nrms", "items": ["N1"]}, LIMIT))
    assert status == 200
    assert post_chunked(client, "/rank", padded(RANK, LIMIT + 1))[0] == 413


def test_the_limit_is_a_setting(make_client):
    client = make_client(max_body_bytes=100)
    assert client.post("/rank", json=RANK).status_code == 200
    answer = client.post("/rank", content=padded(RANK, 101), headers=JSON)
    assert answer.status_code == 413 and "100 bytes" in answer.json()["detail"]


def test_the_key_is_asked_for_before_the_body_limit(make_client):
    client = make_client(api_key="k3y")
    assert client.post("/rank", content=b" " * (2 * LIMIT), headers=JSON).status_code == 401
    assert client.post("/rank", content=b" " * (2 * LIMIT), headers={**JSON, "Authorization": "Bearer k3y"}
                       ).status_code == 413


def test_openapi_documents_413_where_a_body_is_taken(client):
    paths = client.get("/openapi.json").json()["paths"]
    operations = [operation for item in paths.values() for operation in item.values() if "requestBody" in operation]
    assert len(operations) == len(ROUTES) and all("413" in operation["responses"] for operation in operations)
