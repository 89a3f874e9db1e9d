"""Error bodies, in the two shapes the specs use.

FlowRunner paths answer `{"error": {"code", "message", "details"}}`. Every other
path answers one object with `error` (what went wrong, in words), `detail` (the
same message, where FastAPI clients look), `errors` (one entry per offending
field), `status_code`, `timestamp`, `path` and `request_id` (also sent as the
X-Request-ID header). No stack trace ever reaches a client.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from flowctl.api.render import JSONBody, now_iso
from flowctl.domain.graph import FieldError
from flowctl.engine.errors import ServiceError

log = logging.getLogger(__name__)

FLOWRUNNER_PREFIXES = (
    "/api/v1/auth",
    "/api/v1/flows",
    "/api/v1/executions",
    "/api/v1/accounts",
    "/ws/executions",
)
_FLOWRUNNER_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    409: "conflict",
    413: "invalid_request",
    422: "validation_error",
    429: "rate_limited",
}


class ApiError(Exception):
    """An error raised in the HTTP layer itself (body too large, bad JSON)."""

    def __init__(self, status_code: int, message: str, errors: Sequence[FieldError] = ()):
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.errors = list(errors)


def field_path(loc: Sequence[Any]) -> str:
    """("body", "tasks", 1, "name") -> "tasks[1].name"."""
    out = ""
    for part in loc:
        if part in ("body", "query", "path", "header") and not out:
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def error_body(
    request_path: str,
    request_id: str | None,
    status_code: int,
    message: str,
    errors: Sequence[FieldError] = (),
) -> dict[str, Any]:
    if request_path.startswith(FLOWRUNNER_PREFIXES):
        details: dict[str, Any] | None = None
        if errors:
            first = errors[0]
            details = {"field": first.loc, "reason": first.message}
            if len(errors) > 1:
                details["errors"] = [{"field": e.loc, "reason": e.message} for e in errors]
        code = _FLOWRUNNER_CODES.get(
            status_code, "internal_error" if status_code >= 500 else "error"
        )
        return {"error": {"code": code, "message": message, "details": details}}
    return {
        "error": message,
        "detail": message,
        "errors": [{"field": e.loc, "message": e.message, "type": e.type} for e in errors],
        "status_code": status_code,
        "timestamp": now_iso(),
        "path": request_path,
        "request_id": request_id,
    }


def error_response(
    request: Request, status_code: int, message: str, errors: Sequence[FieldError] = ()
) -> JSONBody:
    # The X-Request-ID header itself is added by RequestContextMiddleware.
    request_id = getattr(request.state, "request_id", None)
    return JSONBody(
        error_body(request.url.path, request_id, status_code, message, errors),
        status_code=status_code,
    )


def validation_errors(exc: RequestValidationError) -> list[FieldError]:
    return [
        FieldError(field_path(err.get("loc", ())), err.get("msg", "invalid"), err.get("type", ""))
        for err in exc.errors()
    ]


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, exc: ServiceError):
        errors = getattr(exc, "errors", ())
        return error_response(request, exc.status_code, exc.message, errors)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        return error_response(request, exc.status_code, exc.message, exc.errors)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        errors = validation_errors(exc)
        summary = "; ".join(str(e) for e in errors) or "invalid request"
        return error_response(request, 422, f"Validation failed: {summary}", errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        message = exc.detail if isinstance(exc.detail, str) else "HTTP error"
        if exc.status_code == 404 and message == "Not Found":
            message = f"No endpoint at {request.url.path}"
        elif exc.status_code == 405:
            message = f"Method {request.method} is not allowed on {request.url.path}"
        response = error_response(request, exc.status_code, message)
        if exc.headers:
            response.headers.update(exc.headers)
        return response
