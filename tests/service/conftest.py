"""Fixtures: tiny faithful bundles (tests/service/bundles.py), apps over them, Redis with private key prefixes.

To test against real exported bundles later, point `artifacts` at a folder written by training/export.py and
keep `models` as the reference (only the expected-score helpers depend on the tiny torch modules)."""
from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from service.app import create_app
from service.config import Settings
from tests.service.bundles import TinyModel, build_all

REDIS_URL = "redis://127.0.0.1:6379/0"
# Test clients call from loopback, as `curl localhost` does: without RECSERVE_ADMIN_KEY, admin routes answer
# only loopback clients (TestClient's default address, "testclient", is not one).
LOOPBACK = ("127.0.0.1", 50000)


@pytest.fixture(scope="session")
def bundles(tmp_path_factory) -> tuple[Path, dict[str, TinyModel]]:
    root = tmp_path_factory.mktemp("artifacts")
    return root, build_all(root)


@pytest.fixture(scope="session")
def models(bundles) -> dict[str, TinyModel]:
    return bundles[1]


@pytest.fixture()
def artifacts(bundles, tmp_path) -> Path:
    """A private copy of the bundles, for tests that change files or LATEST."""
    return Path(shutil.copytree(bundles[0], tmp_path / "artifacts"))


@pytest.fixture(scope="session")
def client(bundles) -> Iterator[TestClient]:
    """A shared read-only app (in-process cache). Tests that change state use `make_client`."""
    with TestClient(create_app(Settings(artifacts=bundles[0])), client=LOOPBACK) as c:
        yield c


@pytest.fixture()
def make_client(bundles) -> Iterator:
    """make_client(**settings) -> a started TestClient; artifacts default to the shared bundles. `address`:
    the client's (host, port), default loopback; `raise_server_exceptions=False` answers an exception with its
    500, as a server does, instead of raising it in the test."""
    opened = []

    def make(address: tuple[str, int] = LOOPBACK, raise_server_exceptions: bool = True, **overrides) -> TestClient:
        settings = Settings(**{"artifacts": bundles[0], **overrides})
        c = TestClient(create_app(settings), client=address, raise_server_exceptions=raise_server_exceptions)
        c.__enter__()
        opened.append(c)
        return c

    yield make
    for c in reversed(opened):
        c.__exit__(None, None, None)


@pytest.fixture()
def redis_prefix() -> Iterator[str]:
    """A unique key prefix on the shared Redis; only these keys are deleted afterwards (never FLUSHALL)."""
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=1)
    try:
        client.ping()
    except redis.RedisError:
        pytest.skip("no Redis at 127.0.0.1:6379")
    prefix = f"recserve-test-{uuid.uuid4().hex[:10]}"
    yield prefix
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    if keys:
        client.delete(*keys)


@pytest.fixture(scope="session")
def redis_client() -> redis.Redis:
    return redis.Redis.from_url(REDIS_URL, socket_timeout=1)


class BodyReads:
    """An ASGI wrapper that counts the request-body bytes the app pulls with `receive`."""

    def __init__(self, app):
        self.app, self.bytes = app, 0

    async def __call__(self, scope, receive, send):
        async def counted():
            message = await receive()
            self.bytes += len(message.get("body", b""))
            return message

        await self.app(scope, counted if scope["type"] == "http" else receive, send)


@pytest.fixture()
def reading_client(bundles) -> Iterator:
    """reading_client(**settings) -> (a started TestClient, its `BodyReads`): what the app read of the bodies."""
    opened = []

    def make(**overrides) -> tuple[TestClient, BodyReads]:
        reads = BodyReads(create_app(Settings(**{"artifacts": bundles[0], **overrides})))
        c = TestClient(reads, client=LOOPBACK)
        c.__enter__()
        opened.append(c)
        return c, reads

    yield make
    for c in reversed(opened):
        c.__exit__(None, None, None)
