"""GET /docs (Swagger UI) and GET /redoc (ReDoc) with their scripts, styles and icon served by the app itself,
from the `fastapi-offline` package (the `serve` extra), so the pages work where no CDN can be reached.

FastAPI's own pages load them from a CDN and are blank offline; this is its documented replacement: the app
is built with `docs_url=None, redoc_url=None`, and these routes call `get_swagger_ui_html` / `get_redoc_html`
with local URLs."""
from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.staticfiles import StaticFiles
from starlette.responses import HTMLResponse

ASSETS = "/static/docs"  # where the app serves them
# where they come from: swagger-ui-bundle.js, swagger-ui.css, redoc.standalone.js and favicon.png
ASSETS_PACKAGE, ASSETS_FOLDER = "fastapi_offline", "static"


SWAGGER, REDOC = "/docs", "/redoc"


def paths(app: FastAPI) -> tuple[set[str], str]:
    """What the docs are made of: the pages and the OpenAPI document, and the prefix of their assets."""
    return {SWAGGER, REDOC, app.openapi_url}, ASSETS + "/"


def install(app: FastAPI) -> None:
    """Mount the assets and add the two pages (left out of the OpenAPI document). Like /openapi.json they need
    the API key, when one is set, unless RECSERVE_PUBLIC_DOCS is true (`service.access`)."""
    app.mount(ASSETS, StaticFiles(packages=[(ASSETS_PACKAGE, ASSETS_FOLDER)]), name="docs-assets")

    @app.get(SWAGGER, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = _root(request)
        return get_swagger_ui_html(
            openapi_url=root + app.openapi_url, title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{ASSETS}/swagger-ui-bundle.js", swagger_css_url=f"{root}{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS}/favicon.png",
            # null: no badge fetched from validator.swagger.io, which would also send it the document's URL
            swagger_ui_parameters={**(app.swagger_ui_parameters or {}), "validatorUrl": None})

    @app.get(REDOC, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = _root(request)
        return get_redoc_html(openapi_url=root + app.openapi_url, title=f"{app.title} - ReDoc",
                              redoc_js_url=f"{root}{ASSETS}/redoc.standalone.js",
                              redoc_favicon_url=f"{root}{ASSETS}/favicon.png", with_google_fonts=False)


def _root(request: Request) -> str:
    """The prefix the app is served under (a proxy's root path), as FastAPI's own pages use it."""
    return request.scope.get("root_path", "").rstrip("/")
