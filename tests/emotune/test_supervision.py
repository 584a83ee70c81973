"""``emotune up`` under faults, with a real tritonserver and the real gateway: tritonserver killed (``kill -9``) or
frozen (``SIGSTOP``) under load gives 503s within the deadline (no 500, no hung request), /healthz stays 200 and
/readyz is 503 while Triton is gone; the supervisor reaps the dead server, kills its python stubs, restarts it and
counts the restart in /metrics; a SIGTERM lets in-flight requests finish before Triton stops."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPOSITORY, free_port

TRITON_TIMEOUT_S = 2.0
MARGIN_S = 2.5  # gRPC channel set-up, the shared 2-core machine
TEXT = {"text": "I am feeling very happy today!"}


@dataclass
class Up:
    process: subprocess.Popen
    url: str
    log: Path

    def triton_pid(self) -> int:
        children = [p for p in _children(self.process.pid) if _comm(p) == "tritonserver"]
        assert len(children) == 1, children
        return children[0]

    def restarts(self) -> float:
        for line in httpx.get(f"{self.url}/metrics", timeout=5).text.splitlines():
            if line.startswith("emotune_triton_restarts_total "):
                return float(line.split()[1])
        raise AssertionError("emotune_triton_restarts_total is not in /metrics")


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _reaped(pid: int) -> bool:
    """No such process, not even a zombie (for a child of ``up``: it reaped it)."""
    return not Path(f"/proc/{pid}").exists()


def _dead(pid: int) -> bool:
    """Not running: absent, or a zombie left to whichever process adopted it (a stub whose server was killed)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    pytest.fail(f"{what} did not happen within {timeout:.0f} s")


def _status(url: str) -> int:
    try:
        return httpx.get(url, timeout=5).status_code
    except httpx.HTTPError:
        return 0


@pytest.fixture
def up(tmp_path: Path):
    port = free_port()
    env = {
        **os.environ,
        "EMOTUNE_MODELS": '["text_emotion"]',
        "EMOTUNE_TRITON_TIMEOUT_S": str(TRITON_TIMEOUT_S),
        "EMOTUNE_GRACEFUL_SHUTDOWN_S": "10",
        "EMOTUNE_LOG_LEVEL": "warning",
    }
    log = tmp_path / "up.log"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "emotune.cli",
            "up",
            "--port",
            str(port),
            "--triton-http-port",
            str(free_port()),
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
        stdout=open(log, "wb"),
        stderr=subprocess.STDOUT,
    )  # noqa: SIM115
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for(lambda: process.poll() is not None or _status(f"{url}/readyz") == 200, 180, "emotune up ready")
        assert process.poll() is None, log.read_text()[-3000:]
        yield Up(process, url, log)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()


@dataclass
class Load:
    """Threads posting /text_emotion in a loop, recording (start, status or exception, seconds)."""

    url: str
    threads: int = 4
    results: list[tuple[float, object, float]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> Load:
        self._workers = [threading.Thread(target=self._run, daemon=True) for _ in range(self.threads)]
        for w in self._workers:
            w.start()
        return self

    def _run(self) -> None:
        with httpx.Client(timeout=TRITON_TIMEOUT_S + 10) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    outcome: object = client.post(f"{self.url}/text_emotion?recommend=false", json=TEXT).status_code
                except httpx.HTTPError as exc:
                    outcome = type(exc).__name__
                self.results.append((started, outcome, time.monotonic() - started))
                time.sleep(0.02)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for w in self._workers:
            w.join(TRITON_TIMEOUT_S + 15)

    def since(self, t: float) -> list[tuple[float, object, float]]:
        return [r for r in self.results if r[0] >= t]


def _assert_bounded_503s(results: list, deadline_s: float) -> None:
    outcomes = {o for _, o, _ in results}
    assert outcomes <= {200, 503}, f"only 200 and 503 are allowed: {sorted(map(str, outcomes))}"
    slow = [round(s, 2) for _, o, s in results if o == 503 and s > deadline_s]
    assert not slow, f"503s slower than {deadline_s} s: {slow}"


def test_killed_tritonserver_gives_bounded_503s_then_a_supervised_restart(up: Up):
    old = up.triton_pid()
    stubs = [p for p in _children(old) if _comm(p).startswith("triton_python")]
    assert stubs, "the text model's python stubs"
    assert up.restarts() == 0
    with Load(up.url) as load:
        time.sleep(1.0)
        killed_at = time.monotonic()
        os.kill(old, signal.SIGKILL)
        _wait_for(lambda: any(o == 503 for _, o, _ in load.since(killed_at)), 15, "a 503 after the kill")
        assert _status(f"{up.url}/readyz") == 503, "not ready while Triton is down (the restart waits ≥ 1 s, then loads)"
        assert _status(f"{up.url}/healthz") == 200, "liveness is about the gateway process"
        _wait_for(lambda: any(o == 200 for s, o, _ in load.since(killed_at + 0.5)), 90, "a 200 after the restart")
        recovered_at = time.monotonic()
        time.sleep(1.0)
    _assert_bounded_503s(load.since(killed_at), TRITON_TIMEOUT_S + MARGIN_S)
    assert all(o == 200 for s, o, _ in load.since(recovered_at)), "after recovery every request succeeds"
    assert _reaped(old), "the killed tritonserver was reaped (no zombie)"
    assert all(_dead(p) for p in stubs), "its python stubs were killed"
    assert up.triton_pid() != old
    assert _status(f"{up.url}/readyz") == 200
    assert up.restarts() == 1
    assert "restarting in" in up.log.read_text()


def test_frozen_tritonserver_gives_503_within_the_deadline_and_recovers_on_sigcont(up: Up):
    pid = up.triton_pid()
    with Load(up.url) as load:
        time.sleep(1.0)
        frozen_at = time.monotonic()
        os.kill(pid, signal.SIGSTOP)
        try:
            _wait_for(lambda: sum(o == 503 for _, o, _ in load.since(frozen_at)) >= 4, 20, "503s while frozen")
            asked = time.monotonic()
            assert _status(f"{up.url}/readyz") == 503 and time.monotonic() - asked < TRITON_TIMEOUT_S + MARGIN_S
            assert _status(f"{up.url}/healthz") == 200
        finally:
            os.kill(pid, signal.SIGCONT)
        thawed_at = time.monotonic()
        _wait_for(lambda: sum(o == 200 for _, o, _ in load.since(thawed_at)) >= 4, 30, "200s after SIGCONT")
    _assert_bounded_503s(load.since(frozen_at), TRITON_TIMEOUT_S + MARGIN_S)
    assert up.triton_pid() == pid and up.restarts() == 0, "a frozen server is waited for, not restarted"


def test_sigterm_lets_in_flight_requests_finish_then_stops_triton(up: Up):
    """Triton frozen, so requests stay in flight; SIGTERM to `up`; Triton thawed: the in-flight requests finish with
    200, then `up` stops Triton and its stubs and exits."""
    pid = up.triton_pid()
    stubs = [p for p in _children(pid) if _comm(p).startswith("triton_python")]
    outcomes: list[object] = []

    def one() -> None:
        try:
            outcomes.append(httpx.post(f"{up.url}/text_emotion?recommend=false", json=TEXT, timeout=30).status_code)
        except httpx.HTTPError as exc:
            outcomes.append(type(exc).__name__)

    os.kill(pid, signal.SIGSTOP)
    try:
        requests = [threading.Thread(target=one) for _ in range(3)]
        for r in requests:
            r.start()
        time.sleep(0.5)  # in flight, waiting on the frozen Triton
        up.process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert _status(f"{up.url}/healthz") == 0, "a stopping gateway accepts no new connection"
    finally:
        os.kill(pid, signal.SIGCONT)
    for r in requests:
        r.join(30)
    assert outcomes == [200, 200, 200], outcomes
    assert up.process.wait(60) == 0
    _wait_for(lambda: _reaped(pid) and all(_dead(p) for p in stubs), 10, "tritonserver and its stubs gone")
