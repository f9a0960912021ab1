"""One error shape for every failure: `{"detail": "<message>", "field": "<field or null>"}`, plus `errors` on a
422 from validation (`service.schemas.ErrorBody`, which `documented` puts in the OpenAPI document)."""
from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

from service.schemas import ErrorBody

log = logging.getLogger("recserve.errors")

MEANINGS = {
    401: "Missing or wrong API key (only when RECSERVE_API_KEY is set): send `Authorization: Bearer <key>`",
    403: "Refused to a client that is not loopback: RECSERVE_ADMIN_KEY is unset",
    404: "No model of that name is served (`field` is `model`; GET /models lists the served ones)",
    413: "The request body is larger than RECSERVE_MAX_BODY_BYTES (refused unread)",
    422: "Invalid request: `field` names the first problem; a body that fails validation lists each in `errors`",
    429: "The model keeps as many added items as RECSERVE_MAX_ADDED_ITEMS allows (`field` is `items`); "
         "nothing was added",
    503: "No model is loaded yet (GET /readyz says why), or (events, items) the state store, Redis, could not "
         "take the write: nothing was written",
}
ADMIN_MEANINGS = {
    401: "Missing or wrong admin key: `Authorization: Bearer <RECSERVE_ADMIN_KEY>`; without an admin key, a loopback "
         "client sends the API key, when RECSERVE_API_KEY is set",
}


def documented(*statuses: int, meanings: dict[int, str] | None = None) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error statuses, each with the error body (`meanings` overrides a
    description). A route that declares 422 this way also keeps FastAPI from documenting its own validation
    error shape, which this service never sends."""
    meanings = {**MEANINGS, **(meanings or {})}
    return {status: {"model": ErrorBody, "description": meanings[status]} for status in statuses}


class ServiceError(Exception):
    """An expected failure with its HTTP status, e.g. 404 unknown model or 422 nothing to rank."""

    def __init__(self, status: int, message: str, field: str | None = None):
        super().__init__(message)
        self.status, self.message, self.field = status, message, field


def unprocessable(field: str, message: str) -> ServiceError:
    return ServiceError(422, f"{field}: {message}", field)


def _field(loc: tuple) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    return ".".join(parts) or "body"


def install(app: FastAPI) -> None:
    """Register the handlers that turn every exception into the JSON error shape."""

    @app.exception_handler(ServiceError)
    async def service_error(_: Request, exc: ServiceError) -> JSONResponse:
        return JSONResponse({"detail": exc.message, "field": exc.field}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"field": _field(e.get("loc", ())), "message": e.get("msg", "invalid")} for e in exc.errors()]
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        return JSONResponse({"detail": detail, "field": errors[0]["field"] if errors else None, "errors": errors},
                            status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"detail": exc.detail, "field": None}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": f"internal error: {type(exc).__name__}", "field": None}, status_code=500)
