"""The one place an exception becomes an HTTP answer: ``{"error": code, "message": text, "details": [...],
"request_id": id}``, with the status the error's kind fixes (``gateway.errors``)."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway.errors import EmotuneError, TooLarge
from gateway.metrics import current_request_id

log = logging.getLogger("gateway.errors")


class RequestTooLarge(StarletteHTTPException):
    """An HTTPException, because FastAPI turns any other error raised while it reads the body into a 400."""

    code = "request_too_large"

    def __init__(self, limit: int):
        super().__init__(TooLarge.status, f"the request body is larger than {limit} bytes, this route's limit")


class RequestTimeout(StarletteHTTPException):
    code = "request_timeout"

    def __init__(self, seconds: float):
        super().__init__(408, f"the request body stalled: no data for {seconds:g} s (EMOTUNE_BODY_TIMEOUT_S)")


def error_response(status: int, code: str, message: str, details: list | None = None, headers: dict | None = None) -> JSONResponse:
    body: dict = {"error": code, "message": message}
    if details:
        body["details"] = details
    request_id = current_request_id()
    if request_id:
        body["request_id"] = request_id
    return JSONResponse(body, status_code=status, headers=headers)


def response_for(exc: EmotuneError) -> JSONResponse:
    if exc.internal:
        log.warning("%s (%s): %s", exc.code, current_request_id() or "-", exc.internal)
    return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers())


def _validation_details(exc: RequestValidationError) -> list[dict]:
    return [{"field": ".".join(str(p) for p in e.get("loc", ()) if p != "body"), "problem": e.get("msg", "")} for e in exc.errors()]


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(EmotuneError)
    async def _emotune(_: Request, exc: EmotuneError):
        return response_for(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError):
        details = _validation_details(exc)
        if any(e.get("type") == "json_invalid" for e in exc.errors()):
            return error_response(400, "invalid_json", "the request body is not valid JSON", details)
        summary = "; ".join(f"{d['field'] or 'body'}: {d['problem']}" for d in details)
        return error_response(422, "invalid_request", summary or "invalid request", details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException):
        return error_response(exc.status_code, getattr(exc, "code", "http_error"), str(exc.detail))
