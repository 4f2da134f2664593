"""One error shape for every failure: ``{"error": {"code", "message", "details"}}``.

Codes are the ones the CLI prints: validation errors keep the spec's own
stable codes (``spec.invalid_mount``, ``spec.too_large``...), orchestrator
errors carry theirs and their HTTP status, capacity errors add ``Retry-After``.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from orchestrator.errors import OrchestratorError
from orchestrator.spec import stable_code

log = logging.getLogger(__name__)


class NotReadyError(OrchestratorError):
    """The service cannot take work yet (starting, stopping, store or default provider down)."""

    code = "service.not_ready"
    http_status = 503


_HTTP_CODES = {
    400: "request.bad",
    401: "auth.required",
    403: "auth.forbidden",
    404: "not_found",
    405: "request.method_not_allowed",
    406: "request.not_acceptable",
    411: "request.length_required",
    413: "request.too_large",
    415: "request.unsupported_media_type",
    422: "spec.invalid",
    429: "request.rate_limited",
}


def error_response(
    status: int, code: str, message: str, details: dict[str, Any] | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "details": details or {}}}
    return JSONResponse(body, status_code=status, headers=headers)


def translate_request_errors(errors: list[Any]) -> tuple[str, str, dict[str, Any]]:
    """The CLI's translation (``orchestrator.spec.translate_validation_error``) for FastAPI's error list."""
    code = stable_code(errors)
    if code == "spec.invalid" and any(err.get("type") == "json_invalid" for err in errors):
        code = "spec.malformed"
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    loc = [str(p) for p in first.get("loc", ())]
    where = ".".join(loc[1:] if loc and loc[0] == "body" else loc) or "request"
    details = {
        "errors": [
            {"loc": [str(p) for p in e.get("loc", ())], "msg": e.get("msg"), "type": e.get("type")} for e in errors
        ]
    }
    return code, f"invalid request: {where}: {first.get('msg')}", details


async def _orchestrator_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, OrchestratorError)
    return orchestrator_error_response(exc)


def orchestrator_error_response(exc: OrchestratorError) -> JSONResponse:
    headers = None
    retry_after = exc.details.get("retry_after")
    if exc.http_status in (429, 503) and retry_after is not None:
        headers = {"Retry-After": str(int(retry_after))}
    if exc.http_status >= 500:
        log.warning("request failed: [%s] %s", exc.code, exc.message)
    return error_response(exc.http_status, exc.code, exc.message, exc.details, headers)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    code, message, details = translate_request_errors(list(exc.errors()))
    status = 413 if code == "spec.too_large" else 422
    return error_response(status, code, message, details)


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "request.error" if exc.status_code < 500 else "orchestrator.internal")
    message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    return error_response(exc.status_code, code, message, headers=dict(exc.headers or {}) or None)


async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    return error_response(500, "orchestrator.internal", f"internal error: {type(exc).__name__}")


def install(app: FastAPI) -> None:
    app.add_exception_handler(OrchestratorError, _orchestrator_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
