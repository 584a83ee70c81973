"""The in-process ONNX Runtime backend answers like Triton; with Triton down the gateway answers 503 in bounded time."""

from __future__ import annotations

import time

import httpx

from tests.conftest import REPOSITORY, free_port, start_gateway, stop_gateway

TEXTS = [
    "I am feeling very happy today!",
    "i feel so lonely and miserable tonight",
    "i am furious that they lied to me again",
    "i am afraid something bad will happen",
    "i was amazed to see how big it was",
    "i feel a bit unsure about all this",
]


def test_local_backend_gives_the_same_labels_as_triton(client: httpx.Client, local_gateway_url: str):
    via_triton = client.post("/text_emotion", json={"texts": TEXTS}).json()["results"]
    via_local = httpx.post(f"{local_gateway_url}/text_emotion", json={"texts": TEXTS}, timeout=30).json()["results"]
    assert [r["emotion"] for r in via_local] == [r["emotion"] for r in via_triton]
    # INT8 activations are quantized with per-batch scales, so how rows are grouped (Triton groups them by length) moves the
    # probabilities a little; the labels must not move.
    for a, b in zip(via_local, via_triton):
        assert abs(a["confidence"] - b["confidence"]) < 0.05


def test_triton_down_gives_503_quickly(tmp_path):
    dead_port = free_port()
    process, url = start_gateway(
        {
            "EMOTUNE_BACKEND": "triton",
            "EMOTUNE_TRITON_GRPC_PORT": str(dead_port),
            "EMOTUNE_MODEL_REPOSITORY": str(REPOSITORY),
            "EMOTUNE_TRITON_TIMEOUT_S": "2",
        },
        tmp_path / "gw.log",
    )
    try:
        started = time.monotonic()
        r = httpx.post(f"{url}/text_emotion", json={"text": "hello there"}, timeout=30)
        assert r.status_code == 503, r.text
        assert r.json()["error"] == "model_unavailable"
        assert time.monotonic() - started < 10
        ready = httpx.get(f"{url}/readyz", timeout=30)
        assert ready.status_code == 503
        assert httpx.get(f"{url}/healthz").status_code == 200
    finally:
        stop_gateway(process)


def test_model_not_ready_gives_503(tmp_path):
    """Triton up, but the model unloaded: requests and readiness answer 503, liveness stays 200."""
    from emotune.triton_server import TritonServer

    server = TritonServer(
        REPOSITORY,
        ["text_emotion"],
        http_port=free_port(),
        grpc_port=free_port(),
        metrics_port=free_port(),
        log_file=tmp_path / "triton.log",
        model_control=True,
    )  # explicit mode, so the test may unload
    with server:
        server.wait_ready(timeout=300)
        process, url = start_gateway(
            {
                "EMOTUNE_BACKEND": "triton",
                "EMOTUNE_TRITON_GRPC_PORT": str(server.grpc_port),
                "EMOTUNE_MODEL_REPOSITORY": str(REPOSITORY),
                "EMOTUNE_MODELS": '["text_emotion"]',
            },
            tmp_path / "gw.log",
        )
        try:
            assert httpx.post(f"{url}/text_emotion", json={"text": "hello"}, timeout=30).status_code == 200
            unload = f"{server.http_url}/v2/repository/models/text_emotion/unload"
            assert httpx.post(unload, headers=server.control_headers, timeout=30).status_code == 200
            r = httpx.post(f"{url}/text_emotion", json={"text": "hello"}, timeout=30)
            assert r.status_code == 503 and r.json()["error"] == "model_unavailable", r.text
            ready = httpx.get(f"{url}/readyz", timeout=30)
            assert ready.status_code == 503 and ready.json()["error"] == "model_not_ready", ready.text
        finally:
            stop_gateway(process)
