"""Metrics, request ids and JSON access logs: on a small app (the middleware alone) and on the real gateway."""

from __future__ import annotations

import io
import json
import logging
import re
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from gateway.metrics import (
    ACCESS_LOGGER,
    JsonLogFormatter,
    RequestObservabilityMiddleware,
    configure_json_logging,
    current_request_id,
    install_metrics,
    observe_inference,
    set_modality,
)
from gateway.settings import PROJECT_ROOT, Settings

TEXT_MODEL_DIR = PROJECT_ROOT / "model_repository" / "python" / "text_emotion"


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class FlakyBackendError(Exception):
    pass


class FakeGrpcError(Exception):
    """Shaped like tritonclient's InferenceServerException: the gRPC status comes from ``status()``."""

    def status(self) -> str:
        return "StatusCode.DEADLINE_EXCEEDED"


@pytest.fixture
def small_app() -> FastAPI:
    app = FastAPI()

    @app.get("/emotion/text")
    async def text_route() -> dict:
        with observe_inference("tiny_text", backend="local"):
            pass
        return {"request_id": current_request_id()}

    @app.get("/recommend/{mood}")
    async def recommend_route(mood: str) -> dict:
        set_modality("face")
        return {"mood": mood}

    @app.get("/unavailable")
    async def unavailable_route():
        return JSONResponse({"error": "model_unavailable", "message": "down"}, status_code=503)

    @app.get("/timeout")
    async def timeout_route():
        with observe_inference("tiny_text", backend="triton"):
            raise FakeGrpcError("deadline")

    @app.get("/flaky")
    async def flaky_route():
        with observe_inference("tiny_text", backend="local"):
            raise FlakyBackendError("boom")

    install_metrics(app, Settings(log_json=False))
    return app


@pytest.fixture
def small_client(small_app: FastAPI):
    with TestClient(small_app, raise_server_exceptions=False) as test_client:
        yield test_client


def test_request_id_is_propagated_from_header_to_handler_and_response(small_client: TestClient):
    response = small_client.get("/emotion/text", headers={"X-Request-ID": "abc-123"})
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "abc-123"
    assert response.json() == {"request_id": "abc-123"}


def test_request_id_is_generated_when_missing_or_unsafe(small_client: TestClient):
    generated = small_client.get("/emotion/text")
    assert re.fullmatch(r"[0-9a-f]{32}", generated.headers["x-request-id"])
    assert generated.json()["request_id"] == generated.headers["x-request-id"]
    unsafe = small_client.get("/emotion/text", headers={"X-Request-ID": "bad id\twith spaces"})
    assert unsafe.headers["x-request-id"] != "bad id\twith spaces"
    assert re.fullmatch(r"[0-9a-f]{32}", unsafe.headers["x-request-id"])
    assert current_request_id() is None  # the context does not leak out of the request


def test_requests_and_latency_are_counted_by_route_template_and_modality(small_client: TestClient):
    before_requests = sample("emotune_http_requests_total", method="GET", endpoint="/recommend/{mood}", status="200")
    before_face = sample("emotune_http_request_duration_seconds_count", endpoint="/recommend/{mood}", modality="face")
    before_text = sample("emotune_http_request_duration_seconds_count", endpoint="/emotion/text", modality="text")
    small_client.get("/recommend/calm")
    small_client.get("/recommend/happy")
    small_client.get("/emotion/text")
    assert sample("emotune_http_requests_total", method="GET", endpoint="/recommend/{mood}", status="200") == before_requests + 2
    assert sample("emotune_http_request_duration_seconds_count", endpoint="/recommend/{mood}", modality="face") == before_face + 2
    assert sample("emotune_http_request_duration_seconds_count", endpoint="/emotion/text", modality="text") == before_text + 1


def test_errors_are_counted_by_the_error_code_of_the_body(small_client: TestClient):
    before_unavailable = sample("emotune_errors_total", kind="model_unavailable", endpoint="/unavailable")
    before_404 = sample("emotune_errors_total", kind="http_404", endpoint="unmatched")
    assert small_client.get("/unavailable").status_code == 503
    assert small_client.get("/no/such/path").status_code == 404
    assert sample("emotune_errors_total", kind="model_unavailable", endpoint="/unavailable") == before_unavailable + 1
    # FastAPI's default 404 body has no "error" field: the kind falls back to the status; raw paths never become labels.
    assert sample("emotune_errors_total", kind="http_404", endpoint="unmatched") == before_404 + 1


def test_unhandled_exception_answers_json_500_with_request_id(small_client: TestClient):
    before = sample("emotune_errors_total", kind="internal", endpoint="/flaky")
    response = small_client.get("/flaky", headers={"X-Request-ID": "req-500"})
    assert response.status_code == 500
    assert response.headers["x-request-id"] == "req-500"
    assert response.json()["error"] == "internal"
    assert response.json()["request_id"] == "req-500"
    assert sample("emotune_errors_total", kind="internal", endpoint="/flaky") == before + 1


def test_inference_latency_and_failures_by_kind(small_client: TestClient):
    before_ok = sample("emotune_inference_duration_seconds_count", model="tiny_text", backend="local")
    before_grpc = sample("emotune_inference_failures_total", model="tiny_text", backend="triton", kind="deadline_exceeded")
    before_other = sample("emotune_inference_failures_total", model="tiny_text", backend="local", kind="flaky_backend_error")
    small_client.get("/emotion/text")
    small_client.get("/timeout")
    small_client.get("/flaky")
    assert sample("emotune_inference_duration_seconds_count", model="tiny_text", backend="local") == before_ok + 1
    assert sample("emotune_inference_failures_total", model="tiny_text", backend="triton", kind="deadline_exceeded") == before_grpc + 1
    assert sample("emotune_inference_failures_total", model="tiny_text", backend="local", kind="flaky_backend_error") == before_other + 1


def test_metrics_endpoint_serves_prometheus_text(small_client: TestClient):
    small_client.get("/emotion/text")
    response = small_client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    body = response.text
    for name in (
        "emotune_http_requests_total",
        "emotune_http_request_duration_seconds_bucket",
        "emotune_errors_total",
        "emotune_inference_duration_seconds_bucket",
        "emotune_http_requests_in_progress",
    ):
        assert f"\n{name}" in body or body.startswith(name), name
    assert 'endpoint="/emotion/text"' in body
    assert "/metrics" not in small_client.get("/openapi.json").json()["paths"]


def test_json_access_log_has_one_line_per_request_with_request_id(small_app: FastAPI):
    small_app.add_middleware(RequestObservabilityMiddleware, log_json=True)  # outermost layer: this one logs
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonLogFormatter())
    access = logging.getLogger(ACCESS_LOGGER)
    access.addHandler(handler)
    old_level = access.level
    access.setLevel(logging.INFO)
    try:
        with TestClient(small_app, raise_server_exceptions=False) as test_client:
            test_client.get("/emotion/text", headers={"X-Request-ID": "log-1"})
            test_client.get("/nope", headers={"X-Request-ID": "log-2"})
            test_client.get("/metrics")  # a successful scrape is not logged
    finally:
        access.removeHandler(handler)
        access.setLevel(old_level)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["request_id"] for line in lines] == ["log-1", "log-2"]
    first = lines[0]
    assert {"ts", "level", "logger", "message", "method", "path", "status", "duration_ms", "endpoint", "modality"} <= first.keys()
    assert (first["method"], first["path"], first["status"], first["modality"]) == ("GET", "/emotion/text", 200, "text")
    assert lines[1]["status"] == 404 and lines[1]["level"] == "warning" and lines[1]["error"] == "http_404"


needs_text_model = pytest.mark.skipif(not (TEXT_MODEL_DIR / "model.json").exists(), reason="model_repository/python/text_emotion not exported yet")


@pytest.fixture
def gateway():
    from gateway.app import create_app

    settings = Settings(backend="local", models=["text_emotion"], model_repository=TEXT_MODEL_DIR.parent, log_json=False)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def classify(gateway: TestClient, request_id: str):
    return gateway.post("/text_emotion", params={"recommend": "false"}, json={"text": "I am so happy today"}, headers={"X-Request-ID": request_id})


@needs_text_model
def test_running_gateway_serves_metrics_for_its_routes(gateway: TestClient):
    assert gateway.get("/healthz", headers={"X-Request-ID": "gw-1"}).headers["x-request-id"] == "gw-1"
    before_ready = sample("emotune_http_requests_total", method="GET", endpoint="/readyz", status="200")
    before_text = sample("emotune_http_request_duration_seconds_count", endpoint="/text_emotion", modality="text")
    before_invalid = sample("emotune_errors_total", kind="empty_text", endpoint="/text_emotion")
    assert gateway.get("/readyz").status_code == 200
    response = classify(gateway, "gw-2")
    assert response.status_code == 200, response.text
    assert response.headers["x-request-id"] == "gw-2"
    assert gateway.post("/text_emotion", json={"text": "   "}).status_code == 422
    assert sample("emotune_http_requests_total", method="GET", endpoint="/readyz", status="200") == before_ready + 1
    # Both requests are timed (the rejected one too); only the second is an error.
    assert sample("emotune_http_request_duration_seconds_count", endpoint="/text_emotion", modality="text") == before_text + 2
    assert sample("emotune_errors_total", kind="empty_text", endpoint="/text_emotion") == before_invalid + 1
    body = gateway.get("/metrics").text
    assert 'emotune_http_requests_total{endpoint="/readyz",method="GET",status="200"}' in body
    assert 'emotune_http_request_duration_seconds_bucket{endpoint="/text_emotion"' in body


@needs_text_model
def test_running_gateway_keeps_numpy_to_one_blas_thread(gateway: TestClient):
    """OpenBLAS's idle workers spin after every call; in a gateway that serves many requests at once they only burn
    the cores Triton needs (measured: 24 of a speech request's 28 gateway CPU ms)."""
    from threadpoolctl import threadpool_info

    blas = [pool for pool in threadpool_info() if pool["user_api"] == "blas"]
    assert {pool["num_threads"] for pool in blas} <= {1}, [(pool["filepath"], pool["num_threads"]) for pool in blas]


@needs_text_model
def test_running_gateway_times_its_backend_calls(gateway: TestClient):
    before = sample("emotune_inference_duration_seconds_count", model="text_emotion", backend="local")
    assert classify(gateway, "gw-3").status_code == 200
    assert sample("emotune_inference_duration_seconds_count", model="text_emotion", backend="local") == before + 1


def test_json_logging_setup_is_idempotent_and_silences_uvicorn_access():
    names = (ACCESS_LOGGER, "gateway")
    saved = {n: (list(logging.getLogger(n).handlers), logging.getLogger(n).propagate, logging.getLogger(n).level) for n in names}
    uvicorn_access = logging.getLogger("uvicorn.access")
    was_disabled = uvicorn_access.disabled
    try:
        configure_json_logging("info")
        configure_json_logging("info")
        for name in names:
            ours = [h for h in logging.getLogger(name).handlers if getattr(h, "_emotune_json", False)]
            assert len(ours) == 1 and isinstance(ours[0].formatter, JsonLogFormatter)
        assert uvicorn_access.disabled
    finally:
        for name, (handlers, propagate, level) in saved.items():
            logger = logging.getLogger(name)
            logger.handlers[:] = handlers
            logger.propagate, logger.level = propagate, level
        uvicorn_access.disabled = was_disabled


@pytest.fixture(scope="module")
def json_logging_gateway(triton, tmp_path_factory):
    """A gateway process over the session's tritonserver (gRPC), with JSON logs to a file we can read."""
    from tests.conftest import REPOSITORY, start_gateway, stop_gateway

    log = tmp_path_factory.mktemp("gateway_json_logs") / "gateway.log"
    process, url = start_gateway(
        {
            "EMOTUNE_BACKEND": "triton",
            "EMOTUNE_TRITON_GRPC_PORT": str(triton.grpc_port),
            "EMOTUNE_MODEL_REPOSITORY": str(REPOSITORY),
            "EMOTUNE_MODELS": '["text_emotion"]',
            "EMOTUNE_LOG_JSON": "true",
        },
        log,
    )
    yield url, log
    stop_gateway(process)


def read_json_lines(log: Path) -> list[dict]:
    lines = []
    for line in log.read_text().splitlines():
        try:
            lines.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # library warnings on stderr are not ours to format
    return lines


@needs_text_model
def test_gateway_over_triton_exposes_metrics_and_logs_json_with_request_id(json_logging_gateway):
    import time

    import httpx

    url, log = json_logging_gateway
    with httpx.Client(base_url=url, timeout=30) as http:
        response = http.post(
            "/text_emotion", params={"recommend": "false"}, json={"text": "what a wonderful surprise"}, headers={"X-Request-ID": "e2e-triton-1"}
        )
        assert response.status_code == 200, response.text
        assert response.headers["x-request-id"] == "e2e-triton-1"
        metrics = http.get("/metrics").text
    assert re.search(r'emotune_http_requests_total\{endpoint="/text_emotion",method="POST",status="200"\} [1-9]', metrics)
    assert 'emotune_http_request_duration_seconds_count{endpoint="/text_emotion",modality="text"}' in metrics

    deadline = time.monotonic() + 5
    while True:
        access = [line for line in read_json_lines(log) if line.get("request_id") == "e2e-triton-1"]
        if access or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert len(access) == 1, log.read_text()[-2000:]
    line = access[0]
    assert (line["logger"], line["method"], line["path"], line["status"]) == (ACCESS_LOGGER, "POST", "/text_emotion", 200)
    assert line["duration_ms"] > 0
    assert '"POST /text_emotion HTTP/1.1" 200' not in log.read_text()  # uvicorn's own access line is replaced


@needs_text_model
def test_gateway_over_triton_times_triton_calls(json_logging_gateway):
    import httpx

    url, _ = json_logging_gateway
    with httpx.Client(base_url=url, timeout=30) as http:
        assert http.post("/text_emotion", params={"recommend": "false"}, json={"text": "so calm"}).status_code == 200
        metrics = http.get("/metrics").text
    assert re.search(r'emotune_inference_duration_seconds_count\{backend="triton",model="text_emotion"\} [1-9]', metrics)
