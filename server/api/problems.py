"""Every error leaves the API as an RFC 7807 problem document naming the field at fault."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from server.domain.errors import DomainError, TooManyRequests

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
_TITLES = {
    400: "Bad request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found", 405: "Method not allowed",
    409: "Conflict", 413: "Payload too large", 415: "Unsupported media type", 422: "Invalid input",
    429: "Too many requests", 500: "Internal server error", 503: "Service unavailable",
}  # fmt: skip


def problem(
    status: int, detail: str, *, field: str | None = None, errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:  # fmt: skip
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    if field is not None:
        body["field"] = field
    if errors:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


_SHAPE = {"list_type", "model_type", "dict_type", "model_attributes_type"}


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = list(loc)
    if parts and parts[0] in {"body", "query", "path", "header"}:
        parts = parts[1:]
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        elif p in {"float", "int", "bool", "str", "list[TelemetryItem]", "TelemetryItem"} or "[" in str(p):
            continue  # union branch names pydantic adds to locations
        else:
            out += ("." if out else "") + str(p)
    return out or "body"


async def _domain(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, TooManyRequests) else None
    if exc.status == 401:
        headers = {"WWW-Authenticate": "Bearer"}
    return problem(exc.status, exc.detail, field=exc.field, headers=headers)


async def _validation(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in errors):
        first = next(e for e in errors if e.get("type") == "json_invalid")
        where = first.get("ctx", {}).get("error", "")
        return problem(400, f"request body is not valid JSON: {where}".rstrip(": "), field="body")
    # A body that may be one item or a list yields errors for both branches: keep the branch
    # the client actually sent, and one message per field.
    branchless = [e for e in errors if not (_field(e.get("loc", ())) == "body" and e.get("type") in _SHAPE)]
    errors = branchless or errors
    seen: set[str] = set()
    simplified = []
    for e in errors:
        name = _field(e.get("loc", ()))
        if name not in seen:
            seen.add(name)
            simplified.append({"field": name, "message": str(e.get("msg", ""))})
    first_err = simplified[0]
    return problem(422, f"{first_err['field']}: {first_err['message']}", field=first_err["field"], errors=simplified)


async def _http(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return problem(exc.status_code, str(exc.detail), headers=dict(exc.headers or {}) or None)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem(500, "internal error; the server log has the details")


def install(app: FastAPI) -> None:
    app.add_exception_handler(DomainError, _domain)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(Exception, _unexpected)
