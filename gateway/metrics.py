"""Observability for the gateway: Prometheus metrics, a request id carried from the HTTP edge into Triton, JSON logs.

- ``install_metrics(app, settings)`` adds ``GET /metrics`` and the request middleware.
- The middleware reads ``X-Request-ID`` (or makes one), returns it on every response, counts requests by endpoint
  and status, times them per endpoint and modality, counts errors by the ``error`` code of the JSON error body,
  and (with ``EMOTUNE_LOG_JSON=true``) writes one JSON access-log line per request.
- Inference backends wrap each call in ``observe_inference(model, backend)`` and pass ``current_request_id()`` to
  Triton as the gRPC request id, so a slow request can be found in both logs.

Metrics live in prometheus-client's default registry: one per process, which is why the deployment runs one
uvicorn worker per container and scales by replicas.
"""

from __future__ import annotations

import logging
import re
import sys
import time
import uuid
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

import orjson
from fastapi import FastAPI
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, generate_latest
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID_HEADER = "X-Request-ID"
ACCESS_LOGGER = "emotune.access"

# Buckets: the gateway answers text in milliseconds and audio/images in up to seconds; Triton calls are shorter.
_HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)
_INFERENCE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

HTTP_REQUESTS = Counter("emotune_http_requests", "HTTP requests answered, by route template and status code", ["method", "endpoint", "status"])
HTTP_LATENCY = Histogram(
    "emotune_http_request_duration_seconds",
    "Time from request to the last response byte",
    ["endpoint", "modality"],
    buckets=_HTTP_BUCKETS,
)
HTTP_IN_PROGRESS = Gauge("emotune_http_requests_in_progress", "Requests being handled now")
ERRORS = Counter("emotune_errors", "Error responses by the error code of the body (internal = unhandled exception)", ["kind", "endpoint"])
INFERENCE_LATENCY = Histogram(
    "emotune_inference_duration_seconds",
    "Successful inference calls (Triton gRPC round trip, or local ONNX Runtime)",
    ["model", "backend"],
    buckets=_INFERENCE_BUCKETS,
)
INFERENCE_FAILURES = Counter("emotune_inference_failures", "Inference calls that raised, by kind", ["model", "backend", "kind"])

# Probes and scrapes arrive every few seconds; logging their successes would drown the requests that matter.
QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
_MAX_ERROR_BODY = 8192
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:/+=-]{1,128}$")
_MODALITY_WORDS = {"text": "text", "speech": "speech", "audio": "speech", "voice": "speech", "face": "face", "image": "face"}


@dataclass
class RequestContext:
    """Per-request facts that inner code may fill in; a mutable object so changes survive copied contexts."""

    request_id: str
    modality: str = "none"
    error_kind: str | None = None


_current: ContextVar[RequestContext | None] = ContextVar("emotune_request", default=None)


def current_request_id() -> str | None:
    """The id of the request being handled (None outside a request): pass it to Triton as the gRPC request id."""
    ctx = _current.get()
    return ctx.request_id if ctx else None


def set_modality(modality: str) -> None:
    """Label this request's latency with a modality the path does not tell (e.g. ``/recommend`` given an image)."""
    ctx = _current.get()
    if ctx is not None:
        ctx.modality = modality


class observe_inference:  # noqa: N801 - used like a function: ``with observe_inference("text_emotion"):``
    """Times one inference call; failures are counted by kind instead of polluting the latency histogram."""

    def __init__(self, model: str, backend: str = "triton"):
        self.model, self.backend = model, backend

    def __enter__(self) -> observe_inference:
        self._start = time.perf_counter()
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is None:
            INFERENCE_LATENCY.labels(self.model, self.backend).observe(time.perf_counter() - self._start)
        else:
            INFERENCE_FAILURES.labels(self.model, self.backend, _exception_kind(exc)).inc()
        return False


def _exception_kind(exc: BaseException) -> str:
    """gRPC status when the exception carries one (tritonclient's ``status()``), else the class name in snake_case."""
    status = getattr(exc, "status", None)
    if callable(status):
        try:
            value = status()
        except Exception:  # pragma: no cover - a foreign status() that fails: fall back to the class name
            value = None
        if isinstance(value, str) and value:
            return value.rsplit(".", 1)[-1].lower()
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(exc).__name__).lower()


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            text = value.decode("latin-1").strip()
            return text if _SAFE_REQUEST_ID.match(text) else None
    return None


def _endpoint(scope: Scope) -> str:
    """The route template (``/emotion/{kind}``), never the raw path: raw paths would make unbounded label sets."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


@lru_cache(maxsize=1024)  # a regex split per request otherwise; paths repeat
def _modality_from_path(path: str) -> str:
    """``/text_emotion`` → text, ``/emotion/face`` → face; routes whose input decides it call ``set_modality``."""
    for word in re.split(r"[^a-z]+", path.lower()):
        if word in _MODALITY_WORDS:
            return _MODALITY_WORDS[word]
    return "none"


def _error_code(body: bytes, status: int) -> str:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None
    code = data.get("error") if isinstance(data, dict) else None
    return code if isinstance(code, str) and code else f"http_{status}"


class RequestObservabilityMiddleware:
    """Pure ASGI (not BaseHTTPMiddleware) so the request context is the same one the route and backend see."""

    def __init__(self, app: ASGIApp, log_json: bool = False):
        self.app = app
        self.log_json = log_json
        self.access_log = logging.getLogger(ACCESS_LOGGER)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        ctx = RequestContext(_incoming_request_id(scope) or uuid.uuid4().hex, _modality_from_path(scope.get("path", "")))
        token = _current.set(ctx)
        status = 500
        started = False
        error_body = bytearray()
        start = time.perf_counter()
        HTTP_IN_PROGRESS.inc()

        async def send_with_request_id(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = ctx.request_id
            elif message["type"] == "http.response.body" and status >= 400 and len(error_body) < _MAX_ERROR_BODY:
                error_body.extend(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, send_with_request_id)
        except Exception:
            # Answer in the project's error shape with the request id; re-raise so the server still logs the trace.
            status = 500
            ctx.error_kind = ctx.error_kind or "internal"
            if not started:
                body = orjson.dumps({"error": "internal", "message": "internal server error", "request_id": ctx.request_id})
                await send(
                    {
                        "type": "http.response.start",
                        "status": 500,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (REQUEST_ID_HEADER.lower().encode(), ctx.request_id.encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
            raise
        finally:
            duration = time.perf_counter() - start
            HTTP_IN_PROGRESS.dec()
            endpoint = _endpoint(scope)
            HTTP_REQUESTS.labels(scope.get("method", ""), endpoint, str(status)).inc()
            HTTP_LATENCY.labels(endpoint, ctx.modality).observe(duration)
            if status >= 400:
                ctx.error_kind = ctx.error_kind or _error_code(bytes(error_body), status)
                ERRORS.labels(ctx.error_kind, endpoint).inc()
            if self.log_json and not (status < 400 and scope.get("path") in QUIET_PATHS):
                self._log_access(scope, status, duration, endpoint, ctx)
            _current.reset(token)

    def _log_access(self, scope: Scope, status: int, duration: float, endpoint: str, ctx: RequestContext) -> None:
        client = scope.get("client")
        fields = {
            "method": scope.get("method"),
            "path": scope.get("path"),
            "endpoint": endpoint,
            "status": status,
            "duration_ms": round(duration * 1000, 2),
            "modality": ctx.modality,
            "client": client[0] if client else None,
        }
        if ctx.error_kind:
            fields["error"] = ctx.error_kind
        level = logging.ERROR if status >= 500 else logging.WARNING if status >= 400 else logging.INFO
        self.access_log.log(level, "request", extra={"fields": fields})


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line, with the request id of the request being handled (when there is one)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = current_request_id()
        if request_id:
            entry["request_id"] = request_id
        entry.update(getattr(record, "fields", None) or {})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure_json_logging(level: str = "info") -> None:
    """JSON lines on stdout for the access log, the gateway's own loggers and uvicorn's; uvicorn's access log goes quiet
    because the middleware's line replaces it (with the request id and route template added)."""
    formatter = JsonLogFormatter()
    for name in (ACCESS_LOGGER, "gateway"):
        logger = logging.getLogger(name)
        if not any(getattr(h, "_emotune_json", False) for h in logger.handlers):
            handler = logging.StreamHandler(sys.stdout)
            handler._emotune_json = True  # type: ignore[attr-defined]
            logger.addHandler(handler)
            logger.propagate = False
        for handler in logger.handlers:
            handler.setFormatter(formatter)
        logger.setLevel(level.upper())
    for handler in logging.getLogger("uvicorn").handlers + logging.getLogger("uvicorn.error").handlers:
        handler.setFormatter(formatter)
    logging.getLogger("uvicorn.access").disabled = True


async def metrics_endpoint(_: Request) -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


def install_metrics(app: FastAPI, settings=None) -> None:
    """Add ``GET /metrics`` and the request middleware (call once, in ``create_app``)."""
    if settings is None:
        from gateway.settings import get_settings

        settings = get_settings()
    if settings.log_json:
        configure_json_logging(settings.log_level)
    app.add_route("/metrics", metrics_endpoint, methods=["GET"], include_in_schema=False)
    app.add_middleware(RequestObservabilityMiddleware, log_json=settings.log_json)
