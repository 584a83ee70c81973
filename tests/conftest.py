"""Session fixtures with real parts: a tritonserver process on free loopback ports, and the gateway as a uvicorn
process talking to it over gRPC."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from emotune.triton_server import TritonServer

ROOT = Path(__file__).resolve().parents[1]
REPOSITORY = ROOT / "model_repository" / "python"
SHARED_DATA = Path(os.environ.get("EMOTUNE_SHARED_DATA", ROOT.parent / "shared" / "data"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def served_models() -> list[str]:
    return sorted(p.parent.name for p in REPOSITORY.glob("*/config.pbtxt"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def triton(tmp_path_factory) -> TritonServer:
    log = tmp_path_factory.mktemp("triton") / "tritonserver.log"
    server = TritonServer(REPOSITORY, served_models(), http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(), log_file=log)
    with server:
        server.wait_ready(timeout=300)
        yield server


def start_gateway(env_overrides: dict[str, str], log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "EMOTUNE_PORT": str(port), "EMOTUNE_HOST": "127.0.0.1", **env_overrides}
    process = subprocess.Popen([sys.executable, "-m", "emotune.cli", "serve"], env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gateway exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.3)
    process.kill()
    raise RuntimeError(f"gateway did not start: {log.read_text()[-2000:]}")


def stop_gateway(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture(scope="session")
def gateway_url(triton: TritonServer, tmp_path_factory) -> str:
    """The gateway process, pointed at the session's tritonserver over gRPC."""
    log = tmp_path_factory.mktemp("gateway") / "gateway.log"
    process, url = start_gateway(
        {"EMOTUNE_BACKEND": "triton", "EMOTUNE_TRITON_GRPC_PORT": str(triton.grpc_port), "EMOTUNE_MODEL_REPOSITORY": str(REPOSITORY)}, log
    )
    yield url
    stop_gateway(process)


@pytest.fixture(scope="session")
def local_gateway_url(tmp_path_factory) -> str:
    """The gateway with the in-process ONNX Runtime backend (no Triton)."""
    log = tmp_path_factory.mktemp("gateway_local") / "gateway.log"
    process, url = start_gateway({"EMOTUNE_BACKEND": "local", "EMOTUNE_MODEL_REPOSITORY": str(REPOSITORY)}, log)
    yield url
    stop_gateway(process)


@pytest.fixture
def client(gateway_url: str):
    with httpx.Client(base_url=gateway_url, timeout=30) as c:
        yield c
