"""Access control (`service.access`): the API key, checked before any body is read, on every route."""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from service.config import Settings

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


ADMIN = {"Authorization": "Bearer adm1n"}
REMOTE = ("10.0.0.5", 123)


def reload(make_client, address, headers=None, **settings) -> int:
    return make_client(address, **settings).post("/admin/reload", headers=headers).status_code


def test_without_an_admin_key_admin_routes_answer_loopback_clients_only(make_client):
    answer = make_client(REMOTE).post("/admin/reload")
    assert answer.status_code == 403
    assert answer.json() == {"field": None, "detail": "admin routes answer only loopback clients while "
                             "RECSERVE_ADMIN_KEY is unset: set it and send 'Authorization: Bearer <admin key>'"}
    for host in ("127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"):
        assert reload(make_client, (host, 1)) == 200, host
    for host in ("10.0.0.5", "192.168.1.2", "::ffff:10.0.0.5", "2001:db8::1", "testclient"):
        assert reload(make_client, (host, 1)) == 403, host


def test_with_only_an_api_key_admin_routes_need_loopback_and_the_api_key(make_client):
    assert reload(make_client, REMOTE, AUTH, api_key="k3y") == 403
    assert reload(make_client, ("127.0.0.1", 1), api_key="k3y") == 401
    assert reload(make_client, ("127.0.0.1", 1), AUTH, api_key="k3y") == 200


def test_an_admin_key_opens_admin_routes_from_anywhere_and_the_api_key_does_not(make_client):
    keys = {"api_key": "k3y", "admin_key": "adm1n"}
    remote, local = make_client(REMOTE, **keys), make_client(**keys)
    assert remote.post("/admin/reload", headers=ADMIN).status_code == 200
    for client in (remote, local):
        for headers in (None, AUTH, {"Authorization": "Bearer adm1"}):
            answer = client.post("/admin/reload", headers=headers)
            assert answer.status_code == 401 and "RECSERVE_ADMIN_KEY" in answer.json()["detail"], headers
    assert remote.get("/models", headers=ADMIN).status_code == 401  # the admin key opens admin routes only
    assert reload(make_client, REMOTE, ADMIN, admin_key="adm1n") == 200  # with no API key set too


@pytest.mark.parametrize("key", ["api_key", "admin_key"])
def test_a_key_cannot_be_empty(key):
    with pytest.raises(ValidationError, match=key):
        Settings(**{key: ""})


def test_openapi_documents_the_admin_refusals(client):
    responses = client.get("/openapi.json").json()["paths"]["/admin/reload"]["post"]["responses"]
    assert "RECSERVE_ADMIN_KEY" in responses["401"]["description"]
    assert "loopback" in responses["403"]["description"]
