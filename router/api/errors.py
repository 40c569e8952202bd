"""The API's one error shape, `{"error": {"code": ..., "message": ...}}`, and the handlers that
turn every failure into it: an `ApiError` a route raises, Starlette's 400/404/405, a request
that fails validation (422, with the fields), NATS being unreachable (503, retry) and anything
else (500, logged, no detail leaked). The `code` is stable: clients branch on it, not on text.
"""

from __future__ import annotations

from typing import Any

import nats.errors
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

log = structlog.get_logger("router.api")

MAX_FIELD_ERRORS = 20
"""A body can fail on many fields; 20 is enough to fix a request and keeps the reply small."""

MAX_FIELD_MESSAGE = 200
"""Characters of one field's message: pydantic's can quote the bad input, which can be long."""


class ApiError(Exception):
    """What a route raises to answer with an error: status, stable code, message, headers."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


class FieldError(BaseModel):
    loc: str = Field(description="where: e.g. `body.code`, `path.session_id`")
    message: str
    type: str


class ErrorDetail(BaseModel):
    code: str = Field(description="stable, machine-readable error code")
    message: str = Field(description="human-readable explanation")
    fields: list[FieldError] | None = Field(
        default=None, description="`invalid_request` only: what is wrong with which field"
    )


class ErrorBody(BaseModel):
    error: ErrorDetail


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message, **extra}
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def doc(*codes: tuple[int, str]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for a route's errors: status -> the error codes it may carry."""
    out: dict[int, list[str]] = {}
    for status, code in codes:
        out.setdefault(status, []).append(code)
    return {
        status: {"model": ErrorBody, "description": "error code: " + ", ".join(sorted(names))}
        for status, names in out.items()
    }


INVALID = (422, "invalid_request")
UNREADABLE = (400, "invalid_request")  # a body that is not JSON (routes that take one)
TOO_LARGE = (413, "body_too_large")
UNAVAILABLE = (503, "unavailable")
BAD_API_KEY = (401, "bad_api_key")


def field_errors(errors: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Pydantic's validation errors as `FieldError`s: `loc` joined with dots, bounded."""
    out = []
    for err in errors[:MAX_FIELD_ERRORS]:
        loc = ".".join(str(p) for p in err.get("loc", ()))
        message = str(err.get("msg", ""))[:MAX_FIELD_MESSAGE]
        out.append({"loc": loc, "message": message, "type": err.get("type", "")})
    return out


def http_error(status: int, detail: str, method: str, path: str) -> tuple[str, str]:
    """The (code, message) of one of Starlette's own HTTP errors: the framework's 400
    (an unreadable body), 404 (no route) and 405 (no such method on a route) get a named code,
    any other status `http_<status>`."""
    known = {
        400: ("invalid_request", f"unreadable request body: {detail}"),
        404: ("not_found", f"no endpoint {path}"),
        405: ("method_not_allowed", f"{method} is not allowed on {path}"),
    }
    return known.get(status, (f"http_{status}", str(detail)))


def allowed_methods(request: Request) -> list[str]:
    """Every method the request's path answers to. Starlette's own 405 names only the first
    route that matched the path, and `/v1/sessions` is two routes (GET and POST): RFC 9110
    wants the resource's methods in `Allow`."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        if getattr(route, "methods", None) and route.matches(request.scope)[0] != Match.NONE:
            methods |= route.methods
    return sorted(methods)


def install(app: FastAPI) -> None:
    """Register the handlers that give every error the one body above."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code, message = http_error(exc.status_code, exc.detail, request.method, request.url.path)
        headers = exc.headers
        if exc.status_code == 405:
            headers = {**(headers or {}), "Allow": ", ".join(allowed_methods(request))}
        return error_response(exc.status_code, code, message, headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        fields = field_errors(list(exc.errors()))
        first = f"{fields[0]['loc']}: {fields[0]['message']}" if fields else "invalid request"
        return error_response(422, "invalid_request", first, fields=fields)

    @app.exception_handler(nats.errors.Error)
    async def _nats(request: Request, exc: Exception) -> JSONResponse:
        log.warning("nats_unavailable", path=request.url.path, error=repr(exc))
        return error_response(
            503, "unavailable", "session storage is unavailable, retry", {"Retry-After": "1"}
        )

    @app.exception_handler(TimeoutError)
    async def _timeout(request: Request, exc: Exception) -> JSONResponse:
        return await _nats(request, exc)

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        log.error("internal_error", path=request.url.path, error=repr(exc))
        return error_response(500, "internal", "internal error")
