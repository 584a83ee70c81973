"""What a hostile or careless client meets (issue #23): API keys, rate limits (in memory and shared through a real
redis-server), admission control, slow and idle connections, body caps, and error bodies that leak nothing.

Each test runs the real gateway process (uvicorn with the project's HTTP protocol) on the in-process ONNX Runtime
backend with the text model only, so no tritonserver is needed and start-up is quick.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPOSITORY, free_port, start_gateway, stop_gateway

TEXT = {"text": "i feel wonderful today"}


@contextmanager
def gateway(tmp_path: Path, name: str = "gw", **env: str):
    base = {"EMOTUNE_BACKEND": "local", "EMOTUNE_MODEL_REPOSITORY": str(REPOSITORY), "EMOTUNE_MODELS": '["text_emotion"]'}
    process, url = start_gateway({**base, **{f"EMOTUNE_{k.upper()}": v for k, v in env.items()}}, tmp_path / f"{name}.log")
    try:
        yield url
    finally:
        stop_gateway(process)


def metric(url: str, name: str, **labels: str) -> float:
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_api_keys_guard_every_route_but_the_probes(tmp_path):
    with gateway(tmp_path, api_keys='["key-one", "key-two"]') as url:
        for path in ("/healthz", "/readyz", "/metrics", "/"):
            assert httpx.get(url + path).status_code == 200, path
        missing = httpx.post(f"{url}/text_emotion", json=TEXT)
        assert missing.status_code == 401 and missing.json()["error"] == "unauthorized"
        assert missing.headers["www-authenticate"] == "Bearer" and missing.json()["request_id"]
        wrong = httpx.post(f"{url}/text_emotion", json=TEXT, headers={"Authorization": "Bearer key-three"})
        assert wrong.status_code == 401
        assert httpx.post(f"{url}/music_recommendation", json={"emotion": "joy"}).status_code == 401
        ok = httpx.post(f"{url}/text_emotion", json=TEXT, headers={"Authorization": "Bearer key-two"}, timeout=30)
        assert ok.status_code == 200, ok.text
        assert metric(url, "emotune_refused_requests_total", reason="unauthorized") >= 3


def test_rate_limit_per_key_in_memory(tmp_path):
    with gateway(tmp_path, api_keys='["a", "b"]', rate_limit="3/minute") as url:
        statuses = [
            httpx.post(f"{url}/music_recommendation", json={"emotion": "joy", "enrich": False}, headers={"Authorization": "Bearer a"}).status_code
            for _ in range(4)
        ]
        assert statuses == [200, 200, 200, 429]
        refused = httpx.post(f"{url}/music_recommendation", json={"emotion": "joy"}, headers={"Authorization": "Bearer a"})
        assert refused.json()["error"] == "rate_limited" and 1 <= int(refused.headers["retry-after"]) <= 60
        assert (
            httpx.post(f"{url}/music_recommendation", json={"emotion": "joy", "enrich": False}, headers={"Authorization": "Bearer b"}).status_code
            == 200
        )  # another key, its own budget
        assert httpx.get(f"{url}/healthz").status_code == 200  # probes are never limited


@pytest.fixture
def redis_url(tmp_path):
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server; .ci/run does)")
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    yield f"redis://127.0.0.1:{port}/0"
    process.terminate()
    process.wait(10)


def test_two_replicas_share_one_budget_through_redis(tmp_path, redis_url):
    """Open service (no keys): the budget is per client address, and both replicas count in the same Redis."""
    with (
        gateway(tmp_path, "a", rate_limit="4/minute", rate_limit_storage=redis_url) as a,
        gateway(tmp_path, "b", rate_limit="4/minute", rate_limit_storage=redis_url) as b,
    ):
        body = {"emotion": "calm", "enrich": False}
        statuses = [httpx.post(f"{url}/music_recommendation", json=body).status_code for url in (a, b, a, b, a, b)]
        assert statuses == [200, 200, 200, 200, 429, 429]


def test_admission_control_refuses_beyond_the_limit_and_keeps_probes(tmp_path):
    with gateway(tmp_path, max_concurrent_requests="1", body_timeout_s="20") as url:
        host, port = url.removeprefix("http://").split(":")
        held = socket.create_connection((host, int(port)))
        try:  # a request that is admitted and then stalls in its body: it holds the one slot
            held.sendall(b'POST /text_emotion HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"te')
            time.sleep(0.5)
            refused = httpx.post(f"{url}/text_emotion", json=TEXT)
            assert refused.status_code == 429 and refused.json()["error"] == "overloaded", refused.text
            assert refused.headers["retry-after"] == "1"
            assert httpx.get(f"{url}/healthz").status_code == 200 and httpx.get(f"{url}/readyz").status_code == 200
            assert metric(url, "emotune_refused_requests_total", reason="overloaded") >= 1
        finally:
            held.close()
        time.sleep(0.5)
        assert httpx.post(f"{url}/text_emotion", json=TEXT, timeout=30).status_code == 200  # the slot is free again


def _read_all(sock: socket.socket, timeout: float) -> bytes:
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except TimeoutError:
        pass
    return data


def test_slow_and_idle_clients_are_cut_off(tmp_path):
    with gateway(tmp_path, header_timeout_s="1", body_timeout_s="1") as url:
        host, port = url.removeprefix("http://").split(":")
        idle = [socket.create_connection((host, int(port))) for _ in range(50)]
        slow_header = socket.create_connection((host, int(port)))
        slow_header.sendall(b"POST /text_emotion HTTP/1.1\r\nHost: x\r\n")
        slow_body = socket.create_connection((host, int(port)))
        slow_body.sendall(b"POST /text_emotion HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 50\r\n\r\n{")
        started = time.monotonic()
        assert b"408" in _read_all(slow_header, 5).split(b"\r\n", 1)[0]
        answer = _read_all(slow_body, 5)
        assert b" 408 " in answer.split(b"\r\n", 1)[0] and b"request_timeout" in answer
        assert all(_read_all(s, 5) == b"" for s in idle)  # closed by the server, nothing sent
        assert time.monotonic() - started < 10
        huge = socket.create_connection((host, int(port)))
        huge.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 70_000 + b"\r\n\r\n")
        assert b"431" in _read_all(huge, 5).split(b"\r\n", 1)[0]
        one_write = socket.create_connection((host, int(port)))  # headers and a large body in one segment are not "large headers"
        body = json.dumps({"texts": ["i feel fine " * 400] * 40}).encode()
        one_write.sendall(
            b"POST /text_emotion?recommend=false HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body
        )
        assert _read_all(one_write, 60).startswith(b"HTTP/1.1 200")
        for s in [*idle, slow_header, slow_body, huge, one_write]:
            s.close()
        assert httpx.get(f"{url}/healthz").status_code == 200


def test_json_routes_have_a_small_body_cap_checked_before_parsing(tmp_path):
    with gateway(tmp_path) as url:
        big = json.dumps({"texts": ["x" * 1000] * 40_000}).encode()  # 40 MB
        declared = httpx.post(f"{url}/text_emotion", content=big, headers={"Content-Type": "application/json"})
        assert declared.status_code == 413 and declared.json()["error"] == "request_too_large"

        def chunks():
            for start in range(0, len(big), 1 << 20):
                yield big[start : start + (1 << 20)]

        streamed = httpx.post(f"{url}/text_emotion", content=chunks(), headers={"Content-Type": "application/json"})
        assert streamed.status_code == 413
        largest_valid = {"texts": ["é" * 5000] * 64}  # the settings' own bounds: 64 texts of 5,000 characters
        assert httpx.post(f"{url}/text_emotion", json=largest_valid, params={"recommend": "false"}, timeout=120).status_code == 200


def test_default_cors_allows_no_foreign_origin(tmp_path):
    with gateway(tmp_path) as url:
        preflight = httpx.options(f"{url}/text_emotion", headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"})
        assert "access-control-allow-origin" not in preflight.headers
        simple = httpx.post(f"{url}/text_emotion", json=TEXT, headers={"Origin": "http://evil.example"}, timeout=30)
        assert "access-control-allow-origin" not in simple.headers


def test_keys_with_a_wildcard_origin_are_refused_at_start():
    from gateway.settings import Settings

    with pytest.raises(ValueError, match="CORS"):
        Settings(api_keys=["k"], cors_origins=["*"])


@pytest.mark.parametrize(
    "text, status",
    [
        ("happy \ud800 day", 422),
        ("\ud83d", 422),
        ("nul \x00 inside", 200),
        ("\x00\x01\x02", 422),
        ("bell \x07 and escape \x1b[31m red", 200),
        ("\u200b", 422),
    ],
)
def test_every_valid_json_string_gets_an_answer_or_a_4xx(tmp_path, text, status, local_text_gateway):
    body = json.dumps({"text": text}).encode()  # json.dumps escapes the surrogate: valid JSON, invalid Unicode
    answer = httpx.post(f"{local_text_gateway}/text_emotion", content=body, headers={"Content-Type": "application/json"}, timeout=30)
    assert answer.status_code == status, answer.text
    if status == 422:
        assert answer.json()["error"] in {"invalid_text", "empty_text"}


@pytest.fixture(scope="module")
def local_text_gateway(tmp_path_factory):
    with gateway(tmp_path_factory.mktemp("text")) as url:
        yield url


def test_a_dead_triton_gives_a_503_that_leaks_no_address(tmp_path):
    dead = free_port()
    process, url = start_gateway(
        {
            "EMOTUNE_BACKEND": "triton",
            "EMOTUNE_TRITON_GRPC_PORT": str(dead),
            "EMOTUNE_TRITON_TIMEOUT_S": "2",
            "EMOTUNE_MODEL_REPOSITORY": str(REPOSITORY),
        },
        tmp_path / "dead.log",
    )
    try:
        for answer in (httpx.post(f"{url}/text_emotion", json=TEXT, timeout=30), httpx.get(f"{url}/readyz", timeout=30)):
            assert answer.status_code == 503
            text = answer.text
            assert "127.0.0.1" not in text and str(dead) not in text and "ipv4" not in text and "failed to connect" not in text, text
            assert answer.json()["request_id"] == answer.headers["x-request-id"]
    finally:
        stop_gateway(process)
    assert str(dead) in (tmp_path / "dead.log").read_text()  # the detail went to the log, under the request id
