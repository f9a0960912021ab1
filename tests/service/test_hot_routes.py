"""`HotRoutes`: POST /rank and /recommend reach their endpoints without the router, and answer as they would
through it (the API tests cover every answer; these cover what only the short path could get wrong)."""
from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Annotated

import pytest
from fastapi import BackgroundTasks, Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from fastapi.routing import APIRouter
from fastapi.testclient import TestClient

import service.app
from service.app import create_app
from service.config import Settings
from service.hot_routes import HotRoutes, served_routes
from service.routes import rank
from service.schemas import RankRequest

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



async def check_quota() -> None:
    """A dependency someone might add to the hot routes later."""


async def _endpoint(request: Request) -> JSONResponse:
    return JSONResponse({})


async def _with_dependency_param(request: Request, quota: Annotated[None, Depends(check_quota)]) -> JSONResponse:
    return JSONResponse({})


async def _with_body(request: Request, body: RankRequest) -> JSONResponse:
    return JSONResponse({})


async def _with_query(request: Request, k: int = 10) -> JSONResponse:
    return JSONResponse({})


async def _with_tasks(request: Request, tasks: BackgroundTasks) -> JSONResponse:
    return JSONResponse({})


def _plain(request: Request) -> JSONResponse:
    return JSONResponse({})


REFUSED = {
    "route dependencies": (_endpoint, {"dependencies": [Depends(check_quota)]}, "dependencies check_quota"),
    "a Depends parameter": (_with_dependency_param, {}, "dependencies check_quota"),
    "a body parameter": (_with_body, {}, "parameters body"),
    "a query parameter": (_with_query, {}, "parameters k"),
    "background tasks": (_with_tasks, {}, "parameters tasks"),
    "a route body limit": (_endpoint, {"max_body_size": 1024}, "max_body_size=1024"),
    "a plain def": (_plain, {}, "a plain `def` endpoint"),
}


@pytest.mark.parametrize("case", REFUSED)
def test_a_route_hot_routes_would_skip_part_of_is_refused_naming_it(case):
    endpoint, options, what = REFUSED[case]
    router = APIRouter()
    router.post("/rank")(_endpoint)  # accepted: the error names the other one
    router.post("/quota-rank", **options)(endpoint)
    with pytest.raises(ValueError, match=rf"POST /quota-rank \({endpoint.__name__}\): it declares .*{re.escape(what)}"):
        HotRoutes(None, routes=router.routes)
    assert HotRoutes(None, routes=router.routes[:1]).routes.keys() == {"/rank"}


def test_dependencies_of_the_app_or_the_include_are_refused_when_the_middleware_is_built():
    """Dependencies added where the route does not show them still reach it; the app does not start."""
    for app, include in ((FastAPI(dependencies=[Depends(check_quota)]), {}),
                         (FastAPI(), {"dependencies": [Depends(check_quota)]})):
        router = APIRouter()
        router.post("/rank")(_endpoint)
        app.include_router(router, **include)
        app.add_middleware(HotRoutes, routes=served_routes(app, router))
        with pytest.raises(ValueError, match=r"POST /rank \(_endpoint\): it declares dependencies check_quota"):
            with TestClient(app):
                pass


def test_create_app_refuses_a_hot_route_with_a_dependency(monkeypatch, tmp_path):
    """At construction: `uvicorn service.app:app` fails on import rather than starting."""
    router = APIRouter()
    router.post("/rank", dependencies=[Depends(check_quota)])(rank.rank)
    monkeypatch.setattr(service.app, "rank", SimpleNamespace(router=router))
    monkeypatch.setattr(service.app, "routers", [router])
    with pytest.raises(ValueError, match=r"POST /rank \(rank\): it declares dependencies check_quota"):
        create_app(Settings(artifacts=tmp_path))
