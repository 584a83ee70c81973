"""``emotune up``: Triton and the gateway come up together and go down together, whichever signal stops them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPOSITORY, free_port


def _answers(url: str) -> bool:
    try:
        httpx.get(url, timeout=1)
        return True
    except httpx.HTTPError:
        return False


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_up_serves_and_a_stop_signal_takes_triton_down_too(tmp_path: Path, stop_signal: int):
    port, http = free_port(), free_port()
    env = {**os.environ, "EMOTUNE_MODELS": '["text_emotion"]'}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "emotune.cli",
            "up",
            "--port",
            str(port),
            "--triton-http-port",
            str(http),
            "--triton-grpc-port",
            str(free_port()),
            "--triton-metrics-port",
            str(free_port()),
            "--model-repository",
            str(REPOSITORY),
            "--triton-log",
            str(tmp_path / "triton.log"),
        ],
        env=env,
        stdout=open(tmp_path / "up.log", "wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail(f"emotune up did not become ready: {(tmp_path / 'up.log').read_text()[-2000:]}")
        r = httpx.post(f"http://127.0.0.1:{port}/text_emotion?recommend=false", json={"text": "I am feeling very happy today!"})
        assert r.status_code == 200 and r.json()["emotion"] == "joy"

        process.send_signal(stop_signal)
        process.wait(60)
        deadline = time.monotonic() + 30
        while _answers(f"http://127.0.0.1:{http}/v2/health/live") and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not _answers(f"http://127.0.0.1:{http}/v2/health/live"), "tritonserver outlived emotune up"
    finally:
        if process.poll() is None:
            process.kill()
