"""Pieces every benchmark shares: real inputs, free ports, server processes, percentiles, machine facts."""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import shutil
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# The repository the benchmarks serve, and the text training run (checkpoint + ONNX); overridable for development.
REPOSITORY = Path(os.environ.get("EMOTUNE_BENCH_REPOSITORY", ROOT / "model_repository" / "python"))
REPORTS = REPOSITORY.parent / "reports"
TEXT_MODEL = "text_emotion"


def _text_run() -> Path:
    """The training run the served text model was exported from (its checkpoint is the baseline's model, its
    optimized fp32 ONNX the fp32 variant): ``--run-dir`` of the export command in the export report, else runs/text."""
    if os.environ.get("EMOTUNE_BENCH_TEXT_RUN"):
        return Path(os.environ["EMOTUNE_BENCH_TEXT_RUN"])
    try:
        import shlex

        command = json.loads((REPORTS / TEXT_MODEL / "report.json").read_text()).get("export_command") or ""
        args = shlex.split(command)
        for i, arg in enumerate(args):
            value = args[i + 1] if arg == "--run-dir" and i + 1 < len(args) else arg.split("=", 1)[1] if arg.startswith("--run-dir=") else None
            if value:
                path = Path(value) if Path(value).is_absolute() else ROOT / value
                if path.exists():
                    return path
    except (OSError, ValueError):
        pass
    return ROOT / "runs" / "text"


TEXT_RUN = _text_run()
SHARED_DATA = Path(os.environ.get("EMOTUNE_SHARED_DATA", ROOT.parent / "shared" / "data"))
FALLBACK_TEXTS = [
    "i am feeling very happy today",
    "i feel so alone and nobody seems to care about me anymore",
    "i was furious when they cancelled the concert without telling anyone",
    "i feel nervous about the exam tomorrow morning",
    "i was amazed by how beautiful the view was from the top",
    "im feeling rather rotten so im not very ambitious right now",
    "i feel like a complete idiot for believing him",
    "i have been feeling a little overwhelmed with work lately but things are getting better",
]


def real_texts(n: int = 512, seed: int = 0) -> list[str]:
    """Sentences of the text model's test split (dair-ai/emotion), shuffled deterministically; a fixed list if absent."""
    path = SHARED_DATA / "text" / "test.csv"
    if path.exists():
        with path.open(newline="", encoding="utf-8") as f:
            texts = [row["text"] for row in csv.DictReader(f)]
    else:
        texts = list(FALLBACK_TEXTS)
    random.Random(seed).shuffle(texts)
    return (texts * (n // len(texts) + 1))[:n]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentiles_ms(latencies_s: list[float] | np.ndarray) -> dict[str, float | None]:
    if len(latencies_s) == 0:
        return {"p50_ms": None, "p95_ms": None, "p99_ms": None, "mean_ms": None}
    a = np.asarray(latencies_s, dtype=np.float64) * 1000.0
    p50, p95, p99 = np.percentile(a, [50, 95, 99])
    return {"p50_ms": round(float(p50), 2), "p95_ms": round(float(p95), 2), "p99_ms": round(float(p99), 2), "mean_ms": round(float(a.mean()), 2)}


def machine() -> dict:
    """What the numbers were measured on, and what else was using the CPU at the time."""
    info = {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        info["loadavg_1m"] = float(Path("/proc/loadavg").read_text().split()[0])
    except OSError:
        pass
    info["other_busy_processes"] = busy_processes()
    return info


def busy_processes(threshold: float = 20.0) -> list[str]:
    """Other processes using more than ``threshold`` % CPU right now (``ps``), so a report says what shared the machine."""
    try:
        out = subprocess.run(["ps", "-eo", "pid=,pcpu=,args="], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    me = os.getpid()
    busy = []
    for line in out.splitlines():
        parts = line.split(None, 2)
        if len(parts) < 3 or int(parts[0]) == me:
            continue
        if float(parts[1]) >= threshold:
            busy.append(f"{parts[1]}% {_without_directories(parts[2])[:120]}")
    return busy


def _without_directories(command: str) -> str:
    """A command line with each absolute path cut to its file name: what ran, not where on this machine."""
    return " ".join(Path(word).name if word.startswith("/") else word for word in command.split())


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU seconds used so far by a process and all its live descendants (``/proc``)."""
    tick = os.sysconf("SC_CLK_TCK")
    stats = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)  # ppid, utime + stime
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    total, stack = 0.0, [root]
    while stack:
        pid = stack.pop()
        if pid in stats:
            total += stats[pid][1]
        stack += children.get(pid, [])
    return total


def wait_http(url: str, timeout: float = 120.0, process: subprocess.Popen | None = None, log: Path | None = None) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}\n{tail}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} not ready after {timeout:.0f} s")


def stop_process(process: subprocess.Popen, timeout: float = 15.0) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def triton_server(repository: Path, models: list[str], log: Path, timeout: float = 300.0):
    """A tritonserver on free loopback ports (emotune's launcher), stopped on exit."""
    from emotune.triton_server import TritonServer

    server = TritonServer(repository, models, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(), log_file=log)
    with server:
        server.wait_ready(models, timeout=timeout)
        yield server


@contextmanager
def gateway(
    triton_grpc_port: int, repository: Path, models: list[str], log: Path, workers: int = 1, extra_env: dict | None = None, cwd: Path | None = None
):
    """The FastAPI gateway (``emotune serve``) as its own process, talking gRPC to the given Triton: ``(url, pid)``.

    ``cwd``: run the code found there instead (a patched copy; ``python -m`` puts it first on the path)."""
    port = free_port()
    env = {
        **os.environ,
        "EMOTUNE_HOST": "127.0.0.1",
        "EMOTUNE_PORT": str(port),
        "EMOTUNE_BACKEND": "triton",
        "EMOTUNE_TRITON_GRPC_PORT": str(triton_grpc_port),
        "EMOTUNE_MODEL_REPOSITORY": str(repository),
        "EMOTUNE_MODELS": json.dumps(models),
        "EMOTUNE_WORKERS": str(workers),
        "EMOTUNE_LOG_LEVEL": "warning",
        **(extra_env or {}),
    }
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "emotune.cli", "serve"], env=env, stdout=out, stderr=subprocess.STDOUT, cwd=cwd or ROOT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/healthz", process=process, log=log)
        yield url, process.pid
    finally:
        stop_process(process)


def link_model_copy(src: Path, dst: Path, onnx: Path | None = None) -> Path:
    """A copy of a model folder whose large files are symlinks (``onnx`` replaces ``1/model.onnx``)."""
    if dst.exists():
        shutil.rmtree(dst)
    for path in src.rglob("*"):
        if "__pycache__" in path.parts:
            continue
        target = dst / path.relative_to(src)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix in (".onnx", ".json") and path.stat().st_size > 1_000_000:
            target.symlink_to(path.resolve())
        else:
            shutil.copy2(path, target)
    if onnx is not None:
        model = dst / "1" / "model.onnx"
        model.unlink()
        model.symlink_to(Path(onnx).resolve())
    return dst


def repo_relative(text: str) -> str:
    """Paths inside the checkout written relative to it, so a committed report names no machine's folders."""
    return text.replace(f"{ROOT}/", "")


def write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(repo_relative(json.dumps(data, indent=2)) + "\n")


def step_parser(doc: str | None) -> argparse.ArgumentParser:
    """The options every bench step shares: ``--quick`` (the tests' mode) and ``--out`` (the report folder)."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", type=Path, default=Path("bench/report"))
    return p
