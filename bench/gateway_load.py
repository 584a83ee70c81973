"""Gateway load: an asyncio httpx load generator against the service, and the original design's server in the same run.

Closed loop: ``C`` workers (one keep-alive connection each) send one request, wait for the answer and send the next, for a fixed time after
a warm-up; every worker cycles through real inputs (test-split sentences; RAVDESS clips and face images when
those models are served). Reported per concurrency: requests/s, p50/p95/p99 latency, errors.

Order of one run: the model's in-process ceiling (ONNX Runtime, length-sorted batches of 32) → tritonserver + gateway
(``emotune serve``, gRPC to Triton) → sweep ``/text_emotion`` → a sampled point (bench.text_profile: where each CPU ms
goes) → ``/speech_emotion``, ``/facial_emotion`` when their models are in the repository → both stopped → the ceiling
again (the gateway's rate is held against the mean of the two) → the Flask baseline (bench.baseline_flask) → the same
text sweep with the same sentences and concurrencies.

    python -m bench.gateway_load [--quick] [--out bench/report]
    python -m bench.gateway_load --url http://127.0.0.1:8080 --concurrency 1 8 32   # an already running service
"""

from __future__ import annotations

import asyncio
import itertools
import json
import mimetypes
import os
import subprocess
import sys
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.common import (
    REPOSITORY,
    ROOT,
    SHARED_DATA,
    TEXT_RUN,
    free_port,
    gateway,
    machine,
    percentiles_ms,
    real_texts,
    step_parser,
    stop_process,
    tree_cpu_seconds,
    triton_server,
    wait_http,
    write_json,
)

FULL_CONCURRENCY = [1, 4, 8, 16, 32]
QUICK_CONCURRENCY = [1, 4]
# model folder → (route, what to upload)
MEDIA_ROUTES = {
    "speech_emotion": ("/speech_emotion", "audio"),
    "face_emotion": ("/facial_emotion", "image"),
    "facial_emotion": ("/facial_emotion", "image"),
}


@dataclass
class Request:
    path: str
    content: bytes
    headers: dict[str, str]


def text_requests(texts: list[str], path: str = "/text_emotion") -> list[Request]:
    """Pre-encoded ``{"text": ...}`` bodies: the load generator spends no time building them."""
    headers = {"content-type": "application/json"}
    return [Request(path, json.dumps({"text": t}).encode(), headers) for t in texts]


def upload_requests(path: str, files: list[Path]) -> list[Request]:
    """Pre-encoded multipart bodies with one ``file`` field each."""
    out = []
    for f in files:
        kind = mimetypes.guess_type(f.name)[0] or "application/octet-stream"
        req = httpx.Request("POST", "http://x" + path, files={"file": (f.name, f.read_bytes(), kind)})
        out.append(Request(path, req.read(), {"content-type": req.headers["content-type"]}))
    return out


def media_files(kind: str, n: int) -> list[Path]:
    """RAVDESS clips spread over every actor; for faces the sample photo(s) (a whole photo: the route detects the face)."""
    if kind == "audio":
        return sorted((SHARED_DATA / "ravdess").glob("Actor_*/*.*"))[::37][:n]
    return sorted((SHARED_DATA / "samples").glob("*.jpg"))[:n]


# ---------------------------------------------------------------------------------------------- the load generator
class RawHTTP:
    """A minimal keep-alive HTTP/1.1 client over asyncio streams: pre-encoded requests, status + body read, nothing else.

    The load generator shares the 2 cores with the servers it measures: httpx spends about 2 CPU ms per request
    here, this about a tenth of that, which leaves the cores to the servers (ours and the baseline alike).
    """

    def __init__(self, url: str):
        parsed = httpx.URL(url)
        self.host, self.port = parsed.host, parsed.port or 80
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    def encode(self, req: Request) -> bytes:
        head = (
            f"POST {req.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in req.headers.items())
            + f"content-length: {len(req.content)}\r\n\r\n"
        )
        return head.encode() + req.content

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.reader = self.writer = None

    async def send(self, wire: bytes) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.write(wire)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length, chunked, close = None, False, False
        for line in head.split(b"\r\n")[1:]:
            key, _, value = line.partition(b":")
            key = key.strip().lower()
            if key == b"content-length":
                length = int(value)
            elif key == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif key == b"connection":
                close = b"close" in value.lower()
        if chunked:
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                await self.reader.readexactly(size + 2)
                if size == 0:
                    break
        elif length is not None:
            await self.reader.readexactly(length)
        else:
            await self.reader.read()
            close = True
        if close or head.startswith(b"HTTP/1.0"):
            await self.close()
        return status


async def _closed_loop(url: str, requests: list[Request], concurrency: int, warmup: float, duration: float, client_kind: str) -> dict:
    latencies: list[float] = []
    errors: Counter = Counter()
    ticket = itertools.count()
    counts = {"completed": 0, "total": 0}
    start = time.perf_counter()
    measure_from, measure_to = start + warmup, start + warmup + duration

    def record(t0: float, t1: float, error: str | None) -> None:
        counts["total"] += 1
        if measure_from <= t1 <= measure_to:
            counts["completed"] += 1
            if error:
                errors[error] += 1
            elif t0 >= measure_from:
                latencies.append(t1 - t0)

    async def raw_worker() -> None:
        conn = RawHTTP(url)
        wires = [conn.encode(r) for r in requests]
        while time.perf_counter() < measure_to:
            wire = wires[next(ticket) % len(wires)]
            t0 = time.perf_counter()
            try:
                async with asyncio.timeout(60):
                    code = await conn.send(wire)
                error = None if code == 200 else f"HTTP {code}"
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, TimeoutError) as exc:
                await conn.close()
                error = type(exc).__name__
            record(t0, time.perf_counter(), error)
        await conn.close()

    async def httpx_worker(client: httpx.AsyncClient) -> None:
        while time.perf_counter() < measure_to:
            req = requests[next(ticket) % len(requests)]
            t0 = time.perf_counter()
            try:
                response = await client.post(req.path, content=req.content, headers=req.headers)
                error = None if response.status_code == 200 else f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                error = type(exc).__name__
            record(t0, time.perf_counter(), error)

    if client_kind == "httpx":
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60.0) as client:
            await asyncio.gather(*(httpx_worker(client) for _ in range(concurrency)))
    else:
        await asyncio.gather(*(raw_worker() for _ in range(concurrency)))
    ok = counts["completed"] - sum(errors.values())
    return {
        "concurrency": concurrency,
        "duration_s": duration,
        "requests": counts["completed"],
        "requests_total": counts["total"],
        "ok": ok,
        "throughput_rps": round(ok / duration, 1),
        "errors": sum(errors.values()),
        "error_kinds": dict(errors),
        "client": client_kind,
        **percentiles_ms(latencies),
    }


CLIENT = os.environ.get("EMOTUNE_BENCH_CLIENT", "raw")  # raw | httpx


def run_load(url: str, requests: list[Request], concurrency: int, warmup: float, duration: float, client_kind: str = CLIENT) -> dict:
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    return runner(_closed_loop(url, requests, concurrency, warmup, duration, client_kind))


def sweep(
    url: str, requests: list[Request], concurrency: list[int], warmup: float, duration: float, label: str, processes: dict[str, int] | None = None
) -> list[dict]:
    """One point per concurrency; with ``processes`` ({name: pid}), also the CPU milliseconds each spent per request
    (process trees, whole point including warm-up): where the two cores go.

    Before the first point, every server gets the same priming: a few seconds of requests at concurrency 4 (first
    requests pay for lazy imports, allocator growth and connection set-up, the baseline's PyTorch most of all)."""
    run_load(url, requests, 4, 0.0, min(3.0, max(1.0, warmup)))
    points = []
    for c in concurrency:
        before = {name: tree_cpu_seconds(pid) for name, pid in (processes or {}).items()}
        before["load generator"] = time.process_time()
        point = {"target": label, **run_load(url, requests, c, warmup, duration)}
        after = {name: tree_cpu_seconds(pid) for name, pid in (processes or {}).items()}
        after["load generator"] = time.process_time()
        sent = max(1, point["requests_total"])
        point["cpu_ms_per_request"] = {name: round(1000 * (after[name] - before[name]) / sent, 2) for name in before}
        points.append(point)
        print(
            f"[load] {label:<34} c={c:<3} {point['throughput_rps']:>7.1f} req/s  p50 {point['p50_ms']} ms  p99 {point['p99_ms']} ms"
            f"  errors {point['errors']}  cpu ms/req {point['cpu_ms_per_request']}",
            flush=True,
        )
    return points


# ---------------------------------------------------------------------------------------------- the baseline process
@contextmanager
def baseline_server(log: Path, run_dir: Path = TEXT_RUN):
    port = free_port()
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.baseline_flask", "--port", str(port), "--run-dir", str(run_dir)],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/healthz", timeout=180, process=process, log=log)
        info = httpx.get(url + "/healthz", timeout=5).json()
        yield url, info, process.pid
    finally:
        stop_process(process)


def baseline_available() -> str | None:
    """None when the baseline can run here, else why not (it needs the [train] extra and Flask)."""
    try:
        import flask  # noqa: F401
        import torch  # noqa: F401
        import transformers  # noqa: F401

        from training.text import encoder_dir

        encoder_dir()
    except Exception as exc:  # noqa: BLE001
        return f"{type(exc).__name__}: {exc}"
    return None


# ---------------------------------------------------------------------------------------------- one run
def served_models(repository: Path = REPOSITORY) -> list[str]:
    return sorted(p.parent.name for p in repository.glob("*/config.pbtxt"))


def measure_service(
    out: Path,
    concurrency: list[int],
    warmup: float,
    duration: float,
    texts: list[str],
    quick: bool,
    workers: int = 1,
    extra_env: dict | None = None,
    media: bool = True,
    label: str = "gateway",
    profile_s: float = 0.0,
) -> dict:
    """Triton + gateway up; text sweep (recommendations off, as the original /text_emotion), then (``profile_s``) a sampled
    point at the top concurrency (bench.text_profile); speech/face if served."""
    models = served_models()
    points, notes = [], {}
    with triton_server(REPOSITORY, models, out / "logs" / f"{label}_tritonserver.log") as server:
        with gateway(server.grpc_port, REPOSITORY, models, out / "logs" / f"{label}.log", workers=workers, extra_env=extra_env) as (url, pid):
            processes = {"gateway": pid, "tritonserver": server.process.pid}
            requests = text_requests(texts, "/text_emotion?recommend=false")
            points += sweep(url, requests, concurrency, warmup, duration, f"{label} /text_emotion", processes)
            if profile_s:
                from bench.text_profile import profile

                notes["profile"] = profile(url, requests, pid, server.process.pid, max(concurrency), profile_s, run_load)
            if media:
                for model in models:
                    if model not in MEDIA_ROUTES:
                        continue
                    route, kind = MEDIA_ROUTES[model]
                    files = media_files(kind, 8 if quick else 24)
                    if not files:
                        notes[route] = f"no {kind} inputs under {SHARED_DATA}"
                        continue
                    reqs = upload_requests(route + "?recommend=false", files)
                    points += sweep(url, reqs, concurrency, warmup, duration, f"{label} {route}", processes)
    profile_result = notes.pop("profile", None)
    return {"points": points, "models": models, "notes": notes, "profile": profile_result}


def measure_baseline(out: Path, concurrency: list[int], warmup: float, duration: float, texts: list[str]) -> dict:
    why = baseline_available()
    if why:
        print(f"[load] baseline skipped: {why}", file=sys.stderr)
        return {"points": [], "skipped": why}
    with baseline_server(out / "logs" / "baseline_flask.log") as (url, info, pid):
        points = sweep(url, text_requests(texts), concurrency, warmup, duration, "baseline /text_emotion", {"flask server": pid})
    return {"points": points, "model": info.get("model"), "torch_threads": info.get("torch_threads")}


def summarize(service: dict, baseline: dict) -> dict:
    ours = {p["concurrency"]: p for p in service["points"] if p["target"].endswith("/text_emotion")}
    base = {p["concurrency"]: p for p in baseline.get("points", [])}
    rows = {}
    for c in sorted(set(ours) & set(base)):
        o, b = ours[c], base[c]
        rows[str(c)] = {
            "ours_rps": o["throughput_rps"],
            "baseline_rps": b["throughput_rps"],
            "throughput_ratio": round(o["throughput_rps"] / b["throughput_rps"], 2) if b["throughput_rps"] else None,
            "ours_p99_ms": o["p99_ms"],
            "baseline_p50_ms": b["p50_ms"],
            "ours_p99_le_baseline_p50": (o["p99_ms"] is not None and b["p50_ms"] is not None and o["p99_ms"] <= b["p50_ms"]),
        }
    return {"by_concurrency": rows}


def model_ceiling(quick: bool) -> dict:
    """The served INT8 model in ONNX Runtime in this process (2 threads, length-sorted batches of 32, no serving): what
    the gateway's text throughput is held against, measured in the same run because the machine drifts."""
    from bench.ceiling import encoder_shape, model_rate

    rate = model_rate(REPOSITORY / "text_emotion" / "1" / "model.onnx", real_texts(32 if quick else 256), 2, encoder_shape(), 0.3 if quick else 3.0)
    return {"sentences_per_s": rate["sorted_batch32"]["sentences_per_s"], "at": time.strftime("%H:%M:%S", time.gmtime())}


def ceiling_summary(service: dict, before: dict, after: dict) -> dict:
    ceiling = round((before["sentences_per_s"] + after["sentences_per_s"]) / 2, 1)
    ours = {p["concurrency"]: p for p in service["points"] if p["target"].endswith("/text_emotion")}
    return {
        "ceiling_sentences_per_s": ceiling,
        "before": before,
        "after": after,
        "by_concurrency": {str(c): round(p["throughput_rps"] / ceiling, 3) for c, p in sorted(ours.items())},
    }


def run(quick: bool, out: Path) -> dict:
    concurrency = QUICK_CONCURRENCY if quick else FULL_CONCURRENCY
    warmup, duration = (0.5, 2.0) if quick else (3.0, 20.0)
    texts = real_texts(64 if quick else 1000)
    machine_before = machine()
    ceiling_before = model_ceiling(quick)
    service = measure_service(out, concurrency, warmup, duration, texts, quick, profile_s=4.0 if quick else 12.0)
    ceiling_after = model_ceiling(quick)
    baseline = measure_baseline(out, concurrency, warmup, duration, texts)
    summary = summarize(service, baseline)
    summary["vs_model_ceiling"] = ceiling_summary(service, ceiling_before, ceiling_after)
    result = {
        "service": service,
        "baseline": baseline,
        "summary": summary,
        "settings": {
            "concurrency": concurrency,
            "warmup_s": warmup,
            "duration_s": duration,
            "texts": len(texts),
            "text_query": "recommend=false (the original /text_emotion returned the emotion only)",
        },
        "machine": machine_before,
    }
    write_json(out / "gateway.json", result)
    from bench.gateway_floor import run as gateway_floor  # the gateway's own Python per request, beside this sweep's figure

    gateway_floor(quick, out)
    return result


def main(argv: list[str] | None = None) -> None:
    p = step_parser(__doc__)
    p.add_argument("--url", help="load an already running service's /text_emotion instead of starting one (no baseline)")
    p.add_argument("--path", default="/text_emotion?recommend=false")
    p.add_argument("--concurrency", type=int, nargs="+", default=FULL_CONCURRENCY)
    p.add_argument("--duration", type=float, default=20.0)
    p.add_argument("--warmup", type=float, default=3.0)
    args = p.parse_args(argv)
    if args.url:
        points = sweep(args.url, text_requests(real_texts(1000), args.path), args.concurrency, args.warmup, args.duration, args.url)
        print(json.dumps(points, indent=2))
        return
    result = run(args.quick, args.out)
    print(json.dumps(result["summary"], indent=2))


if __name__ == "__main__":
    main()
