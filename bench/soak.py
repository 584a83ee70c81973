"""Soak: mixed text, speech and face load at about 80% of the service's measured peak for ten minutes; every request
must succeed and neither the gateway's nor Triton's memory may grow.

One run: tritonserver + gateway → the peak (closed loop, mixed requests, concurrency 16) → an open loop at
``fraction × peak`` requests/s for ``duration`` → resident memory of each process tree sampled every few seconds.
Memory is "flat" when the least-squares slope over the samples after the first fifth is under ``MAX_SLOPE_MB_PER_MIN``.

    python -m bench.soak [--quick] [--out bench/report] [--minutes 10] [--fraction 0.8]
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections import Counter
from pathlib import Path

import numpy as np

from bench.common import REPOSITORY, gateway, machine, percentiles_ms, real_texts, step_parser, triton_server, write_json
from bench.gateway_load import RawHTTP, media_files, run_load, served_models, text_requests, upload_requests

MAX_SLOPE_MB_PER_MIN = 1.0
CONNECTIONS = 64


def tree_rss_mb(root: int) -> float:
    """Resident memory of a process and all its live descendants (``/proc``), in MB."""
    page = os.sysconf("SC_PAGE_SIZE")
    parents, rss = {}, {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            rss[int(entry.name)] = int((entry / "statm").read_text().split()[1]) * page
        except (OSError, IndexError, ValueError):
            continue
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack.extend(children.get(pid, []))
    return total / 1e6


def mixed_requests(quick: bool) -> list:
    """About 8 texts to 1 clip to 1 photo, interleaved: a service's traffic is mostly text, the media calls are heavier."""
    texts = text_requests(real_texts(400 if not quick else 40), "/text_emotion?recommend=false")
    models = served_models()
    media = []
    if "speech_emotion" in models:
        media.append(upload_requests("/speech_emotion?recommend=false", media_files("audio", 12)))
    if "face_emotion" in models:
        media.append(upload_requests("/facial_emotion?recommend=false", media_files("image", 4)))
    mixed, media_cycle = [], [itertools.cycle(m) for m in media if m]
    for i, text in enumerate(texts):
        mixed.append(text)
        if i % 8 == 7:
            mixed.extend(next(c) for c in media_cycle)
    return mixed


async def _open_loop(url: str, requests: list, rate: float, duration: float, sample, every: float) -> dict:
    """Requests released on a fixed schedule (``rate`` per second) over a pool of keep-alive connections."""
    latencies: list[float] = []
    errors: Counter = Counter()
    kinds: Counter = Counter()
    ticket = itertools.count()
    start = time.perf_counter()
    end = start + duration

    async def worker() -> None:
        conn = RawHTTP(url)
        wires = [(r.path.split("?")[0], conn.encode(r)) for r in requests]
        while True:
            n = next(ticket)
            due = start + n / rate
            if due >= end:
                break
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            path, wire = wires[n % len(wires)]
            t0 = time.perf_counter()
            try:
                async with asyncio.timeout(60):
                    code = await conn.send(wire)
                error = None if code == 200 else f"HTTP {code}"
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, TimeoutError) as exc:
                await conn.close()
                error = type(exc).__name__
            kinds[path] += 1
            if error:
                errors[f"{path} {error}"] += 1
            else:
                latencies.append(time.perf_counter() - t0)
        await conn.close()

    async def sampler() -> None:
        while time.perf_counter() < end:
            sample()
            await asyncio.sleep(every)
        sample()

    await asyncio.gather(sampler(), *(worker() for _ in range(CONNECTIONS)))
    sent = sum(kinds.values())
    return {
        "requests": sent,
        "by_route": dict(kinds),
        "errors": sum(errors.values()),
        "error_kinds": dict(errors),
        "achieved_rps": round(sent / duration, 1),
        **percentiles_ms(latencies),
    }


def _slope_mb_per_min(samples: list[tuple[float, float]]) -> float:
    steady = samples[len(samples) // 5 :]
    if len(steady) < 3:
        return 0.0
    t = np.array([s[0] for s in steady]) / 60.0
    mb = np.array([s[1] for s in steady])
    return round(float(np.polyfit(t, mb, 1)[0]), 3)


def run(quick: bool, out: Path, minutes: float | None = None, fraction: float = 0.8) -> dict:
    duration = 60.0 * (minutes if minutes is not None else (0.25 if quick else 10.0))
    requests = mixed_requests(quick)
    models = served_models()
    machine_before = machine()
    with triton_server(REPOSITORY, models, out / "logs" / "soak_tritonserver.log") as server:
        with gateway(server.grpc_port, REPOSITORY, models, out / "logs" / "soak_gateway.log") as (url, pid):
            run_load(url, requests, 4, 0.0, 3.0)  # priming, as the gateway sweep does
            peak = run_load(url, requests, 16, 2.0, 5.0 if quick else 20.0)
            rate = max(1.0, fraction * peak["throughput_rps"])
            memory: dict[str, list[tuple[float, float]]] = {"gateway": [], "tritonserver": []}
            t_start = time.monotonic()

            def sample() -> None:
                now = time.monotonic() - t_start
                memory["gateway"].append((now, tree_rss_mb(pid)))
                memory["tritonserver"].append((now, tree_rss_mb(server.process.pid)))

            print(f"[soak] peak {peak['throughput_rps']} req/s (mixed, c=16); holding {rate:.1f} req/s for {duration:.0f} s", flush=True)
            load = asyncio.run(_open_loop(url, requests, rate, duration, sample, 2.0 if quick else 10.0))
    result = {
        "peak": {k: peak[k] for k in ("throughput_rps", "p50_ms", "p99_ms", "errors")},
        "target_rps": round(rate, 1),
        "fraction_of_peak": fraction,
        "duration_s": duration,
        "load": load,
        "memory_mb": {
            name: {
                "first": round(s[0][1], 1),
                "last": round(s[-1][1], 1),
                "max": round(max(v for _, v in s), 1),
                "slope_mb_per_min": _slope_mb_per_min(s),
                "samples": [[round(t, 1), round(v, 1)] for t, v in s],
            }
            for name, s in memory.items()
        },
        "max_slope_mb_per_min": MAX_SLOPE_MB_PER_MIN,
        "machine": machine_before,
    }
    result["met"] = {
        "no_errors": load["errors"] == 0,
        "memory_flat": all(m["slope_mb_per_min"] < MAX_SLOPE_MB_PER_MIN for m in result["memory_mb"].values()),
    }
    write_json(out / "soak.json", result)
    print(
        f"[soak] {load['requests']} requests, {load['errors']} errors, p99 {load['p99_ms']} ms; memory slope "
        + ", ".join(f"{n} {m['slope_mb_per_min']} MB/min" for n, m in result["memory_mb"].items()),
        flush=True,
    )
    return result


def main(argv: list[str] | None = None) -> None:
    p = step_parser(__doc__)
    p.add_argument("--minutes", type=float)
    p.add_argument("--fraction", type=float, default=0.8)
    args = p.parse_args(argv)
    run(args.quick, args.out, args.minutes, args.fraction)


if __name__ == "__main__":
    main()
