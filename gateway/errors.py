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
        code = "request_too_large" if exc.status_code == 413 else "http_error"
        return error_response(exc.status_code, code, str(exc.detail))
