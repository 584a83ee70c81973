"""Where a ``/text_emotion`` request's CPU milliseconds go under load: the gateway, tritonserver, its python stubs.

While the closed-loop load runs at one concurrency, ``py-spy`` samples the gateway process and one python-backend
stub of the text model, and ``/proc`` gives each process's CPU time over the same window. Each gateway sample is
named by the innermost frame that a rule recognises (tokenization, the gRPC call, HTTP parsing, ...); a category's
share of the samples times the gateway's CPU ms per request is its cost per request. The stubs' samples split into
ONNX Runtime's ``Session.run`` and everything else the stub does (gathering the requests' tensors, sorting rows by
length, building responses, shared-memory IPC); tritonserver's own process (gRPC front end, dynamic batcher) is one row.

Used by ``bench.gateway_load`` on the service it starts; ``py-spy`` comes with the ``[bench]`` extra (it needs
permission to read another process's memory: root, or ptrace allowed). Without it the step records why.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

# (category, pattern): checked from the innermost frame outwards; the first frame that matches names the sample.
GATEWAY_RULES = [
    ("tokenization (tokenizers, padding)", r"preprocessing/text\.py|tokenizers"),
    ("gRPC call to Triton (tritonclient, grpc.aio)", r"tritonclient|grpc/|cygrpc|inference/triton\.py"),
    (
        "answer: calibrate, scores dict, JSON",
        r"to_emotion|calibrate|jsonable_encoder|serialize_response|JSONResponse|responses\.py|"
        r"orjson|json/encoder",
    ),
    (
        "request: read body, parse JSON, validate",
        r"get_request_body|request_body_to_args|pydantic|validate_texts|json/decoder|json/__init__|"
        r"fastapi/_compat|Request\.json|Request\.body|requests\.py",
    ),
    ("coalescing and service logic", r"services/|text_batcher"),
    ("metrics, request id, access log", r"gateway/metrics\.py|prometheus_client|uuid|logging"),
    ("HTTP parsing and writing (uvicorn, httptools)", r"uvicorn/protocols|gateway/serving\.py|httptools"),
    (
        "routing, dependencies, middlewares (starlette, fastapi, ours)",
        r"starlette|fastapi|gateway/uploads\.py|gateway/deps\.py|gateway/routes|"
        r"gateway/access\.py|limits/",
    ),
    ("event loop (uvloop/asyncio: I/O, task switches)", r"asyncio|uvloop|runners\.py"),
]
STUB_RULES = [("ONNX Runtime Session.run", r"onnxruntime"), ("stub Python (gather, length sort, responses)", r"model\.py")]


def py_spy() -> str | None:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    return found if Path(found).exists() else None


def own_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process (not its children)."""
    import os

    fields = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def text_stub_pids(triton_pid: int, model: str = "text_emotion") -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if int(stat[1]) == triton_pid and any(f"/{model}/".encode() in a for a in args):
            pids.append(int(entry.name))
    return sorted(pids)


def categorize(raw: Path, rules: list[tuple[str, str]]) -> Counter:
    """Samples per category from py-spy's raw (collapsed-stack) output."""
    counts: Counter = Counter()
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        frames = stack.split(";")
        category = "other"
        for frame in reversed(frames):
            match = next((c for c, p in rules if re.search(p, frame)), None)
            if match:
                category = match
                break
        counts[category] += int(n)
    return counts


def coalesced(url: str) -> tuple[float, float]:
    """(calls, requests) the gateway's text batcher has made and carried so far (its Prometheus histogram)."""
    import httpx

    values = {}
    for line in httpx.get(url + "/metrics", timeout=10).text.splitlines():
        for name in ("emotune_text_coalesced_requests_count", "emotune_text_coalesced_requests_sum"):
            if line.startswith(name + " "):
                values[name] = float(line.split()[1])
    return values.get("emotune_text_coalesced_requests_count", 0.0), values.get("emotune_text_coalesced_requests_sum", 0.0)


def profile(url: str, requests: list, gateway_pid: int, triton_pid: int, concurrency: int, seconds: float, run_load) -> dict:
    """One load point with sampling; returns the rows of the breakdown (CPU ms per request per category)."""
    spy = py_spy()
    if spy is None:
        return {"skipped": "py-spy is not installed (pip install py-spy)"}
    stubs = text_stub_pids(triton_pid)
    work = Path(tempfile.mkdtemp(prefix="emotune-profile-"))
    targets = {"gateway": gateway_pid, **({"stub": stubs[0]} if stubs else {})}
    spies = {
        name: subprocess.Popen(
            [spy, "record", "-p", str(pid), "-d", str(int(seconds)), "-r", "100", "-f", "raw", "--nonblocking", "-o", str(work / f"{name}.txt")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for name, pid in targets.items()
    }
    time.sleep(1.0)  # py-spy attaches
    processes = {"gateway": [gateway_pid], "tritonserver (gRPC front end, dynamic batcher)": [triton_pid], "stubs": stubs}
    before = {k: sum(own_cpu_seconds(p) for p in pids) for k, pids in processes.items()}
    calls_before = coalesced(url)
    before_load = time.process_time()
    point = run_load(url, requests, concurrency, 0.0, seconds - 1.5)
    after = {k: sum(own_cpu_seconds(p) for p in pids) for k, pids in processes.items()}
    calls = [b - a for a, b in zip(calls_before, coalesced(url), strict=True)]
    load_ms = 1000 * (time.process_time() - before_load) / max(1, point["requests_total"])
    errors = {}
    for name, proc in spies.items():
        try:
            _, err = proc.communicate(timeout=seconds + 30)
        except subprocess.TimeoutExpired:
            proc.kill()
            err = b"timeout"
        if not (work / f"{name}.txt").exists():
            errors[name] = err.decode(errors="replace")[-300:]
    if "gateway" in errors:
        return {"skipped": f"py-spy could not sample the gateway: {errors['gateway']}"}
    n = max(1, point["requests_total"])
    ms = {k: 1000 * (after[k] - before[k]) / n for k in processes}
    rows = []
    gateway_samples = categorize(work / "gateway.txt", GATEWAY_RULES)
    total = sum(gateway_samples.values()) or 1
    for category, count in gateway_samples.most_common():
        rows.append(
            {"process": "gateway", "what": category, "share": round(count / total, 3), "cpu_ms_per_request": round(ms["gateway"] * count / total, 3)}
        )
    rows.append(
        {
            "process": "tritonserver",
            "what": "tritonserver itself (gRPC front end, dynamic batcher, shared-memory IPC)",
            "share": None,
            "cpu_ms_per_request": round(ms["tritonserver (gRPC front end, dynamic batcher)"], 3),
        }
    )
    if "stub" in targets and "stub" not in errors:
        stub_samples = categorize(work / "stub.txt", STUB_RULES)
        stub_total = sum(stub_samples.values()) or 1
        for category in [c for c, _ in STUB_RULES] + ["other"]:
            count = stub_samples.get(category, 0)
            what = category if category != "other" else "stub native code (IPC, tensors to and from shared memory)"
            rows.append(
                {
                    "process": "python stubs",
                    "what": what,
                    "share": round(count / stub_total, 3),
                    "cpu_ms_per_request": round(ms["stubs"] * count / stub_total, 3),
                }
            )
    else:
        rows.append({"process": "python stubs", "what": "all (not sampled)", "share": None, "cpu_ms_per_request": round(ms["stubs"], 3)})
    rows.append({"process": "load generator", "what": "the closed-loop client (same cores)", "share": None, "cpu_ms_per_request": round(load_ms, 3)})
    shutil.rmtree(work, ignore_errors=True)
    return {
        "concurrency": concurrency,
        "seconds": seconds,
        "requests": point["requests_total"],
        "throughput_rps": point["throughput_rps"],
        "p50_ms": point["p50_ms"],
        "p99_ms": point["p99_ms"],
        "rows": rows,
        "cpu_ms_per_request": {k: round(v, 3) for k, v in ms.items()} | {"load generator": round(load_ms, 3)},
        "total_cpu_ms_per_request": round(sum(ms.values()) + load_ms, 3),
        "sampler_errors": errors,
        "coalesced_calls": calls[0],
        "requests_per_call": round(calls[1] / calls[0], 2) if calls[0] else None,
    }
