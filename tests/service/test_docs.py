"""/docs and /redoc load every script, style and icon from the app itself: no CDN, so they work offline."""
from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.config import Settings


class _Assets(HTMLParser):
    """The URLs a page makes the browser fetch: script src and link href."""

    def __init__(self):
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script" and attrs.get("src"):
            self.urls.append(attrs["src"])
        if tag == "link" and attrs.get("href"):
            self.urls.append(attrs["href"])


def assets(html: str) -> list[str]:
    parser = _Assets()
    parser.feed(html)
    return parser.urls


@pytest.mark.parametrize(("page", "script"), [("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")])
def test_doc_pages_load_their_assets_from_the_app(client, page, script):
    response = client.get(page)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    urls = assets(response.text)
    assert any(url.endswith(script) for url in urls) and any(url.endswith(".png") for url in urls)
    assert not re.search(r"https?://", response.text), "nothing on the page may come from another host"
    for url in urls:
        assert url.startswith("/static/docs/"), url
        asset = client.get(url)
        assert asset.status_code == 200 and len(asset.content) > 1000, url
    assert "/openapi.json" in response.text


def test_doc_pages_under_a_root_path(bundles):
    with TestClient(create_app(Settings(artifacts=bundles[0])), root_path="/api") as client:
        html = client.get("/api/docs").text
        urls = assets(html)
        assert urls and all(url.startswith("/api/static/docs/") for url in urls)
        assert "url: '/api/openapi.json'" in html
        assert all(client.get(url).status_code == 200 for url in urls)


def test_doc_pages_are_not_in_the_openapi_document(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert not {p for p in paths if p.startswith(("/docs", "/redoc", "/static"))}
