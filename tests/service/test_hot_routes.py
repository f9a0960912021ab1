"""`HotRoutes`: POST /rank and /recommend reach their endpoints without the router, and answer as they would
through it (the API tests cover every answer; these cover what only the short path could get wrong)."""
from __future__ import annotations

import pytest
from fastapi import HTTPException
from fastapi.responses import JSONResponse
from fastapi.routing import APIRouter
from fastapi.testclient import TestClient

from service.app import create_app
from service.config import Settings

RANK = {"model": "nrms", "user_id": "u1", "candidates": ["N1", "N2"]}


@pytest.fixture()
def router_calls(monkeypatch) -> list[str]:
    """The paths of the HTTP requests that reached the app's router."""
    calls, original = [], APIRouter.__call__

    async def counted(self, scope, receive, send):
        if scope["type"] == "http":
            calls.append(scope["path"])
        await original(self, scope, receive, send)

    monkeypatch.setattr(APIRouter, "__call__", counted)
    return calls


def test_hot_routes_skip_the_router_and_others_do_not(client, router_calls):
    assert client.post("/rank", json=RANK).status_code == 200
    assert client.post("/recommend", json={"model": "nrms", "user_id": "u1", "k": 3}).status_code == 200
    assert client.post("/rank", json={**RANK, "model": "nope"}).status_code == 404  # errors too
    assert router_calls == []
    assert client.get("/healthz").status_code == 200
    assert client.get("/rank").status_code == 405  # another method: the router answers, as before
    assert router_calls == ["/healthz", "/rank"]


def test_hot_routes_under_a_root_path(bundles, router_calls):
    with TestClient(create_app(Settings(artifacts=bundles[0])), root_path="/api") as client:
        response = client.post("/api/rank", json=RANK)
        assert response.status_code == 200 and len(response.json()["results"]) == 2
        assert router_calls == []
        assert client.post("/api/nowhere", json=RANK).status_code == 404


def test_an_unexpected_error_is_a_logged_500_and_counted(bundles, caplog):
    with TestClient(create_app(Settings(artifacts=bundles[0])), raise_server_exceptions=False) as client:

        def broken(*_args):
            raise RuntimeError("boom")

        client.app.state.ranker.rank = broken
        response = client.post("/rank", json=RANK)
        assert response.status_code == 500
        assert response.json() == {"detail": "internal error: RuntimeError", "field": None}
        assert "unhandled error on POST /rank" in caplog.text
        metrics = client.get("/metrics").text
        assert 'recserve_request_seconds_count{model="nrms",route="/rank",status="500"} 1.0' in metrics


def test_exception_handlers_are_found_as_the_router_path_finds_them(bundles):
    """A handler keyed by status code wins for an HTTPException, and a plain `def` handler works too."""
    app = create_app(Settings(artifacts=bundles[0]))
    app.add_exception_handler(418, lambda _request, exc: JSONResponse({"by": "status"}, status_code=418))
    app.add_exception_handler(LookupError, lambda _request, exc: JSONResponse({"by": "sync"}, status_code=409))
    with TestClient(app) as client:
        for error, status, body in ((HTTPException(418), 418, {"by": "status"}), (KeyError("x"), 409, {"by": "sync"})):

            def failing(*_args, error=error):
                raise error

            client.app.state.ranker.rank = failing
            response = client.post("/rank", json=RANK)
            assert (response.status_code, response.json()) == (status, body)
