"""Gateway settings compared interleaved: one tritonserver, one gateway per variant, all up at once, short rounds in turn.

A shared or drifting machine moves a 20-s point by ±20% within minutes, so ``bench.tuning``'s one-row-per-gateway
layout cannot resolve a 10% change. Here every variant is measured in every round, next to the others, and the
report takes per-round ratios to the reference and their median.

    python -m bench.gateway_ab [--quick] [--out bench/report] [--rounds 4] [--seconds 8]
"""

from __future__ import annotations

import statistics
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from bench.common import REPOSITORY, gateway, machine, real_texts, step_parser, tree_cpu_seconds, triton_server, write_json
from bench.gateway_load import run_load, served_models, text_requests
from bench.tuning import patched_code

# name → (what it changes, EMOTUNE_* settings, concurrencies[, shipped gateway code changes undone: bench.tuning.GATEWAY_PATCHES]);
# the first is the reference
VARIANTS = {
    "ref": ("shipped: text coalescing on, 8 calls in flight of ≤ 120 tokens; Triton forms batches of 4 rows", {}, (1, 32)),
    "coalesce_off": (
        "text coalescing off (EMOTUNE_TEXT_COALESCE=false): each request its own call, Triton's dynamic batcher batches them",
        {"EMOTUNE_TEXT_COALESCE": "false"},
        (1, 32),
    ),
    "coalesce_f2_any": (
        "text coalescing with 2 calls in flight of any size (…_IN_FLIGHT=2, …_MAX_TOKENS=2048)",
        {"EMOTUNE_TEXT_COALESCE_IN_FLIGHT": "2", "EMOTUNE_TEXT_COALESCE_MAX_TOKENS": "2048"},
        (32,),
    ),
    "coalesce_f8_t60": (
        "text coalescing, 8 calls in flight of ≤ 60 tokens (…_MAX_TOKENS=60)",
        {"EMOTUNE_TEXT_COALESCE_MAX_TOKENS": "60"},
        (32,),
    ),
    "gc_freeze_undone": ("gc.freeze() after start-up undone (a full collection scans every start-up object again)", {}, (32,), ("gc_freeze",)),
}


def run(quick: bool, out: Path, rounds: int = 4, seconds: float = 8.0) -> dict:
    rounds, seconds = (1, 2.0) if quick else (rounds, seconds)
    variants = dict(list(VARIANTS.items())[:2]) if quick else VARIANTS
    requests = text_requests(real_texts(64 if quick else 1000), "/text_emotion?recommend=false")
    models = served_models()
    points: dict[str, list[dict]] = {}
    started = time.strftime("%H:%M", time.gmtime())
    with ExitStack() as stack:
        server = stack.enter_context(triton_server(REPOSITORY, models, out / "logs" / "gateway_ab_tritonserver.log"))
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="emotune-ab-")))
        gateways = {}
        for name, (_, env, _, *undone) in variants.items():
            code = patched_code(work / name, list(undone[0]), reverse=True) if undone else None
            if undone and code is None:
                continue  # the change is not in the code (any more): nothing to undo
            gateways[name] = stack.enter_context(
                gateway(server.grpc_port, REPOSITORY, models, out / "logs" / f"gateway_ab_{name}.log", extra_env=env, cwd=code)
            )
        for url, _ in gateways.values():
            run_load(url, requests, 4, 0.0, 1.0 if quick else 3.0)
        for r in range(rounds):
            for c in (1, 32):
                for name, (_, _, levels, *_) in variants.items():
                    if c not in levels or name not in gateways:
                        continue
                    url, pid = gateways[name]
                    cpu = {"gateway": tree_cpu_seconds(pid), "tritonserver": tree_cpu_seconds(server.process.pid)}
                    point = run_load(url, requests, c, 0.5 if quick else 1.0, seconds)
                    sent = max(1, point["requests_total"])
                    point["cpu_ms_per_request"] = {
                        "gateway": round(1000 * (tree_cpu_seconds(pid) - cpu["gateway"]) / sent, 2),
                        "tritonserver": round(1000 * (tree_cpu_seconds(server.process.pid) - cpu["tritonserver"]) / sent, 2),
                    }
                    point.update(variant=name, round=r)
                    points.setdefault(f"{name}@{c}", []).append(point)
                    print(
                        f"[ab] round {r} c={c:<3} {name:<13} {point['throughput_rps']:7.1f} req/s p50 {point['p50_ms']} ms "
                        f"p99 {point['p99_ms']} ms cpu {point['cpu_ms_per_request']}",
                        flush=True,
                    )
    rows = []
    for key, pts in points.items():
        name, c = key.split("@")
        ref = points.get(f"ref@{c}")
        ratios = [p["throughput_rps"] / q["throughput_rps"] for p, q in zip(pts, ref, strict=True) if q["throughput_rps"]] if ref else []
        med = lambda field, pts=pts: statistics.median(p[field] for p in pts if p[field] is not None)  # noqa: E731
        rows.append(
            {
                "variant": name,
                "change": variants[name][0],
                "concurrency": int(c),
                "rounds": len(pts),
                "throughput_rps": round(med("throughput_rps"), 1),
                "p50_ms": round(med("p50_ms"), 2),
                "p99_ms": round(med("p99_ms"), 2),
                "median_ratio_to_ref": round(statistics.median(ratios), 3) if ratios else None,
                "ratios_to_ref": [round(x, 3) for x in ratios],
                "gateway_cpu_ms": round(statistics.median(p["cpu_ms_per_request"]["gateway"] for p in pts), 2),
                "tritonserver_cpu_ms": round(statistics.median(p["cpu_ms_per_request"]["tritonserver"] for p in pts), 2),
            }
        )
    rows.sort(key=lambda r: (r["concurrency"], r["variant"] != "ref"))
    result = {
        "method": f"{rounds} rounds × {seconds:g} s per variant and concurrency (1 s warm-up), every variant's gateway up at once on one "
        f"tritonserver, run {started}–{time.strftime('%H:%M', time.gmtime())} UTC; medians of the rounds, ratio = the "
        "variant's throughput over the reference's in the same round",
        "rows": rows,
        "points": points,
        "machine": machine(),
    }
    write_json(out / "gateway_ab.json", result)
    return result


def main(argv: list[str] | None = None) -> None:
    p = step_parser(__doc__)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--seconds", type=float, default=8.0)
    args = p.parse_args(argv)
    for row in run(args.quick, args.out, args.rounds, args.seconds)["rows"]:
        print(row)


if __name__ == "__main__":
    main()
