"""Triton's control surface is closed on the launcher's tritonserver: the finding's remote-code-execution request
(``POST /v2/repository/models/<any>/load`` carrying a config and a base64 ``file:1/model.py``) is refused and runs
nothing, as JSON and as the ``text/plain`` body a web page can send cross-origin; unload, logging and the other
state-changing APIs are refused over HTTP and gRPC; inference and health over gRPC (the gateway's path) still work."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from emotune.triton_server import TritonServer
from tests.conftest import REPOSITORY, free_port

EVIL_MODEL = """
import pathlib
pathlib.Path({marker!r}).write_text("ran")
class TritonPythonModel:
    def execute(self, requests):
        return []
"""


def _load_body(marker: Path) -> str:
    config = {
        "name": "pwn",
        "backend": "python",
        "max_batch_size": 0,
        "input": [{"name": "x", "data_type": "TYPE_FP32", "dims": [1]}],
        "output": [{"name": "y", "data_type": "TYPE_FP32", "dims": [1]}],
    }
    code = base64.b64encode(EVIL_MODEL.format(marker=str(marker)).encode()).decode()
    return json.dumps({"parameters": {"config": json.dumps(config), "file:1/model.py": code}})


@pytest.fixture(scope="module", params=["none", "explicit"], ids=["control-none", "control-explicit"])
def server(request, tmp_path_factory):
    """The launcher as `emotune up` runs it (mode none), and in the explicit mode the unload tests use."""
    log = tmp_path_factory.mktemp("triton-control") / "tritonserver.log"
    triton = TritonServer(
        REPOSITORY,
        ["text_emotion"],
        http_port=free_port(),
        grpc_port=free_port(),
        metrics_port=free_port(),
        log_file=log,
        model_control=request.param == "explicit",
    )
    with triton:
        triton.wait_ready(timeout=300)
        yield triton


@pytest.mark.parametrize("content_type", ["application/json", "text/plain"])
def test_the_rce_load_request_is_refused_and_runs_nothing(server: TritonServer, tmp_path: Path, content_type: str):
    marker = tmp_path / "ran"
    r = httpx.post(f"{server.http_url}/v2/repository/models/pwn/load", content=_load_body(marker), headers={"Content-Type": content_type}, timeout=30)
    assert r.status_code == 403, r.text
    assert "restricted" in r.json()["error"]
    time.sleep(1.0)  # a load would have started the stub by now
    assert not marker.exists(), "the uploaded model.py ran"
    assert httpx.get(f"{server.http_url}/v2/models/pwn/ready", timeout=5).status_code != 200


def test_unload_and_the_other_control_apis_are_refused_over_http(server: TritonServer):
    for method, path, body in [
        ("POST", "/v2/repository/models/text_emotion/unload", "{}"),
        ("POST", "/v2/repository/index", "{}"),
        ("POST", "/v2/logging", '{"log_file": "/tmp/x"}'),
        ("POST", "/v2/trace/setting", '{"trace_file": "/tmp/x"}'),
        ("POST", "/v2/systemsharedmemory/region/r/register", '{"key": "/x", "offset": 0, "byte_size": 8}'),
        ("POST", "/v2/models/text_emotion/infer", "{}"),
        ("GET", "/v2/models/text_emotion/config", None),
    ]:
        r = httpx.request(method, server.http_url + path, content=body, headers={"Content-Type": "text/plain"}, timeout=10)
        assert r.status_code == 403, (path, r.status_code, r.text)
    assert httpx.get(f"{server.http_url}/v2/models/text_emotion/ready", timeout=5).status_code == 200


def test_the_control_protocols_are_refused_over_grpc_while_inference_works(server: TritonServer, tmp_path: Path):
    client = grpcclient.InferenceServerClient(server.grpc_url)
    marker = tmp_path / "ran"
    calls = {
        "load": lambda: client.load_model(
            "pwn",
            config=json.loads(_load_body(marker))["parameters"]["config"],
            files={"file:1/model.py": EVIL_MODEL.format(marker=str(marker)).encode()},
        ),
        "unload": lambda: client.unload_model("text_emotion"),
        "index": lambda: client.get_model_repository_index(),
        "logging": lambda: client.update_log_settings({"log_file": "/tmp/x"}),
        "trace": lambda: client.update_trace_settings(settings={"trace_file": "/tmp/x"}),
        "shared memory": lambda: client.register_system_shared_memory("r", "/x", 8),
    }
    for name, call in calls.items():
        with pytest.raises(InferenceServerException, match="restricted"):
            call()
            pytest.fail(f"{name} was allowed")
    time.sleep(1.0)
    assert not marker.exists()
    assert client.is_server_live() and client.is_model_ready("text_emotion")
    ids, mask = grpcclient.InferInput("input_ids", [1, 4], "INT64"), grpcclient.InferInput("attention_mask", [1, 4], "INT64")
    ids.set_data_from_numpy(np.array([[101, 7592, 2088, 102]], dtype=np.int64))
    mask.set_data_from_numpy(np.ones((1, 4), dtype=np.int64))
    probabilities = client.infer("text_emotion", [ids, mask]).as_numpy("probabilities")
    assert probabilities.shape == (1, 5) and abs(float(probabilities.sum()) - 1) < 1e-3
    client.close()


def test_with_the_launch_secret_model_control_none_still_loads_nothing(server: TritonServer, tmp_path: Path):
    """Defence in depth: even a caller holding this launch's secret cannot load in mode none (explicit mode: tests only)."""
    if server.model_control:
        pytest.skip("explicit mode: the secret opens load/unload by design (tests that unload a model)")
    marker = tmp_path / "ran"
    r = httpx.post(f"{server.http_url}/v2/repository/models/pwn/load", content=_load_body(marker), headers=server.control_headers, timeout=30)
    assert r.status_code != 200 and "not allowed" in r.json()["error"], r.text
    time.sleep(1.0)
    assert not marker.exists()


def test_the_command_line_carries_the_closing_flags(server: TritonServer):
    command = " ".join(server.command())
    assert ("--model-control-mode=explicit" if server.model_control else "--model-control-mode=none") in command
    assert "--http-restricted-api=model-repository,shared-memory,trace,logging,inference,model-config:emotune-triton-control=" in command
    assert "--grpc-restricted-protocol=model-repository,shared-memory,trace,logging:emotune-triton-control=" in command
    assert "--http-address=127.0.0.1" in command and "--grpc-address=127.0.0.1" in command and "--metrics-address=127.0.0.1" in command
