"""One JSON error shape for every failure: ``{"error": code, "message": text, "details": [...]}``."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway.inference import ModelUnavailable
from gateway.preprocessing import InvalidInput


class ServiceError(Exception):
    """A client-facing error with its HTTP status and a stable code."""

    def __init__(self, status: int, code: str, message: str, details: list | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details or []


class RequestTooLarge(StarletteHTTPException):
    """An HTTPException, because FastAPI turns any other error raised while it reads the body into a 400."""

    code = "request_too_large"

    def __init__(self, limit: int):
        super().__init__(413, f"the request body is larger than {limit} bytes, the limit (EMOTUNE_MAX_REQUEST_BYTES)")


def error_response(status: int, code: str, message: str, details: list | None = None) -> JSONResponse:
    body = {"error": code, "message": message}
    if details:
        body["details"] = details
    return JSONResponse(body, status_code=status)


def _validation_details(exc: RequestValidationError) -> list[dict]:
    return [{"field": ".".join(str(p) for p in e.get("loc", ()) if p != "body"), "problem": e.get("msg", "")} for e in exc.errors()]


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def _service(_: Request, exc: ServiceError):
        return error_response(exc.status, exc.code, exc.message, exc.details)

    @app.exception_handler(InvalidInput)
    async def _input(_: Request, exc: InvalidInput):
        return error_response(exc.status, exc.code, exc.message)

    @app.exception_handler(ModelUnavailable)
    async def _unavailable(_: Request, exc: ModelUnavailable):
        return error_response(503, "model_unavailable", str(exc))

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
