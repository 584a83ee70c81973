"""docker/triton-serve.sh, the command every GPU deployment runs, against a real tritonserver 2.51 (the wheel's CPU
build standing in for the image's): the finding's RCE request is refused and runs nothing, unload is refused, HTTP
answers health only, and gRPC still serves inference and health (what the gateway needs)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from emotune.triton_server import _libs_dir, _pytriton_dir, prepare_backends, prepare_python_env, stage_repository
from tests.conftest import REPOSITORY, free_port
from tests.deploy.conftest import DOCKER

SCRIPT = DOCKER / "triton-serve.sh"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The script with ``tritonserver`` on PATH being the wheel's binary, told this machine's ports and backends."""
    work = tmp_path_factory.mktemp("triton-serve")
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "emotune" / "triton"
    staged = stage_repository(REPOSITORY.resolve(), ["text_emotion"], prepare_python_env(cache), cache)
    http, grpc, metrics = free_port(), free_port(), free_port()
    wrapper = work / "bin" / "tritonserver"
    wrapper.parent.mkdir()
    wrapper.write_text(f"""#!/bin/sh
exec {_pytriton_dir() / "bin" / "tritonserver"} "$@" --backend-directory={prepare_backends(cache)} --allow-gpu-metrics=false \\
  --http-address=127.0.0.1 --http-port={http} --grpc-address=127.0.0.1 --grpc-port={grpc} \\
  --metrics-address=127.0.0.1 --metrics-port={metrics}
""")
    wrapper.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{wrapper.parent}:{os.environ['PATH']}",
        "TRITON_MODEL_REPOSITORY": str(staged),
        "LD_LIBRARY_PATH": str(_libs_dir()),
    }
    env.pop("TRITON_CONTROL_KEY", None)
    log = work / "tritonserver.log"
    process = subprocess.Popen(
        ["sh", str(SCRIPT)],
        env=env,
        stdout=open(log, "wb"),
        stderr=subprocess.STDOUT,  # noqa: SIM115
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{http}"
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()[-3000:]
            try:
                if httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail(f"triton-serve.sh not ready: {log.read_text()[-3000:]}")
        yield url, f"127.0.0.1:{grpc}", process
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()
        import shutil

        shutil.rmtree(staged, ignore_errors=True)


def _rce_body(marker: Path) -> str:
    config = {
        "name": "pwn",
        "backend": "python",
        "max_batch_size": 0,
        "input": [{"name": "x", "data_type": "TYPE_FP32", "dims": [1]}],
        "output": [{"name": "y", "data_type": "TYPE_FP32", "dims": [1]}],
    }
    code = (
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\nclass TritonPythonModel:\n    def execute(self, r):\n        return []\n"
    )
    return json.dumps({"parameters": {"config": json.dumps(config), "file:1/model.py": base64.b64encode(code.encode()).decode()}})


def test_the_deployment_command_refuses_the_rce_request_and_unload(served, tmp_path: Path):
    url, _, process = served
    assert process.args[-1].endswith("triton-serve.sh")
    marker = tmp_path / "ran"
    for content_type in ("application/json", "text/plain"):
        r = httpx.post(f"{url}/v2/repository/models/pwn/load", content=_rce_body(marker), headers={"Content-Type": content_type}, timeout=30)
        assert r.status_code == 403, r.text
    r = httpx.post(f"{url}/v2/repository/models/text_emotion/unload", content="{}", headers={"Content-Type": "text/plain"}, timeout=30)
    assert r.status_code == 403, r.text
    time.sleep(1.0)
    assert not marker.exists(), "the uploaded model.py ran"
    assert httpx.get(f"{url}/v2/models/text_emotion/ready", timeout=5).status_code == 200


def test_http_answers_health_only(served):
    url, _, _ = served
    assert httpx.get(f"{url}/v2/health/live", timeout=5).status_code == 200
    for method, path in [
        ("GET", "/v2"),
        ("GET", "/v2/models/text_emotion"),
        ("GET", "/v2/models/text_emotion/config"),
        ("GET", "/v2/models/text_emotion/stats"),
        ("POST", "/v2/models/text_emotion/infer"),
        ("POST", "/v2/logging"),
        ("POST", "/v2/trace/setting"),
        ("POST", "/v2/repository/index"),
    ]:
        assert httpx.request(method, url + path, content="{}", timeout=5).status_code == 403, path


def test_grpc_serves_inference_and_health_and_refuses_control(served, tmp_path: Path):
    _, grpc_url, _ = served
    client = grpcclient.InferenceServerClient(grpc_url)
    marker = tmp_path / "ran"
    config = json.loads(json.loads(_rce_body(marker))["parameters"]["config"])
    for call in (
        lambda: client.load_model("pwn", config=json.dumps(config), files={"file:1/model.py": b"import os"}),
        lambda: client.unload_model("text_emotion"),
        lambda: client.get_model_config("text_emotion"),
        lambda: client.get_inference_statistics("text_emotion"),
        lambda: client.update_log_settings({"log_file": "/tmp/x"}),
    ):
        with pytest.raises(InferenceServerException, match="restricted"):
            call()
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("text_emotion")
    ids, mask = grpcclient.InferInput("input_ids", [1, 4], "INT64"), grpcclient.InferInput("attention_mask", [1, 4], "INT64")
    ids.set_data_from_numpy(np.array([[101, 7592, 2088, 102]], dtype=np.int64))
    mask.set_data_from_numpy(np.ones((1, 4), dtype=np.int64))
    assert client.infer("text_emotion", [ids, mask]).as_numpy("probabilities").shape == (1, 5)
    client.close()
