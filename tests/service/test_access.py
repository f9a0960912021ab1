"""Access control (`service.access`): the API key, checked before any body is read, on every route."""
from __future__ import annotations

AUTH = {"Authorization": "Bearer k3y"}
JSON = {"content-type": "application/json"}
BAD_JSON = b'{"model": "nrms", "candidates": ['


def post_routes(client) -> dict[str, dict]:
    """Every POST operation of the OpenAPI document, by a URL that reaches it."""
    paths = client.get("/openapi.json", headers=AUTH).json()["paths"]
    return {path.replace("{user_id}", "u1"): item["post"] for path, item in paths.items() if "post" in item}


def test_the_key_is_checked_before_the_body_is_read(reading_client):
    client, reads = reading_client(api_key="k3y")
    posts = post_routes(client)
    assert {"/rank", "/recommend", "/items", "/users/u1/events", "/admin/reload"} <= set(posts)
    answers = {url: client.post(url, content=BAD_JSON, headers=JSON) for url in posts}
    assert {url: a.status_code for url, a in answers.items()} == dict.fromkeys(posts, 401)
    assert reads.bytes == 0  # refused unread
    for answer in answers.values():
        assert answer.json() == {"detail": "missing or wrong API key: send 'Authorization: Bearer <key>'",
                                 "field": None}
        assert answer.headers["www-authenticate"] == "Bearer"
    with_body = [url for url, operation in posts.items() if "requestBody" in operation]
    answers = {url: client.post(url, content=BAD_JSON, headers={**JSON, **AUTH}) for url in with_body}
    assert {url: a.status_code for url, a in answers.items()} == dict.fromkeys(with_body, 422)
    assert all("JSON" in a.json()["detail"] for a in answers.values())
    assert reads.bytes == len(BAD_JSON) * len(with_body) == len(BAD_JSON) * 4


def test_paths_no_route_serves_need_the_key_too(make_client):
    client = make_client(api_key="k3y")
    assert client.get("/nowhere").status_code == 401  # who may call says nothing of what exists
    assert client.get("/nowhere", headers=AUTH).status_code == 404
    assert client.get("/healthz").status_code == 200 and client.get("/readyz").status_code == 200


def test_the_key_must_be_a_bearer_token(make_client):
    client = make_client(api_key="k3y")
    for header in ("k3y", "Basic k3y", "Bearer k3y-not", "Bearer", "Bearer k3"):
        assert client.get("/models", headers={"Authorization": header}).status_code == 401, header
    assert client.get("/models", headers={"Authorization": "bearer  k3y "}).status_code == 200


DOCS = ["/docs", "/redoc", "/openapi.json", "/static/docs/swagger-ui-bundle.js", "/static/docs/redoc.standalone.js"]


def test_the_docs_need_the_key(make_client):
    client = make_client(api_key="k3y")
    assert {path: client.get(path).status_code for path in DOCS} == dict.fromkeys(DOCS, 401)
    assert {path: client.get(path, headers=AUTH).status_code for path in DOCS} == dict.fromkeys(DOCS, 200)


def test_public_docs_open_the_docs_and_nothing_else(make_client):
    client = make_client(api_key="k3y", public_docs=True)
    assert {path: client.get(path).status_code for path in DOCS} == dict.fromkeys(DOCS, 200)
    assert client.get("/models").status_code == 401 and client.post("/rank", json={}).status_code == 401
