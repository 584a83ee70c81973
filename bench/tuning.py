"""What each optimization gains: one change at a time against the shipped configuration, measured back to back.

Triton level (perf_analyzer, real sentences, concurrency 32): every variant is loaded into one tritonserver
under its own name, so they run under the same conditions — queue delay, preferred batch sizes, ONNX Runtime
threads, instance count, ORT thread spinning, ragged batching (mixed widths in one batch), dynamic batching off.

Gateway level (the asyncio load generator, ``POST /text_emotion``, concurrency 32, some rows also at 1): the gateway's
text coalescing off (and with 2 calls of any size in flight), uvicorn's access log, uvicorn workers, the cost of
recommendations in the answer, shipped gateway code changes undone, and the best Triton-level change end to end.

    python -m bench.tuning [--quick] [--out bench/report] [--gateway-only]
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import REPOSITORY, TEXT_MODEL, gateway, link_model_copy, machine, real_texts, step_parser, triton_server, write_json
from bench.gateway_load import served_models, text_requests
from bench.gateway_load import sweep as sweep_load
from bench.triton_perf import Variant, build_repository, fp32_onnx, sweep


def shipped_state(repository: Path = REPOSITORY) -> dict:
    """What the shipped text model does, so each experiment flips one setting away from it."""
    config = (repository / TEXT_MODEL / "config.pbtxt").read_text()
    number = lambda pattern, default: int(m.group(1)) if (m := re.search(pattern, config)) else default  # noqa: E731
    return {
        "ragged": "allow_ragged_batch: true" in config,
        "length_grouped": not re.search(r'key: "length_input" value: \{ string_value: "" \}', config),
        "spinning": 'key: "session.intra_op.allow_spinning" value: { string_value: "0" }' not in config,  # ONNX Runtime spins by default
        "queue_delay_us": number(r"max_queue_delay_microseconds: (\d+)", 0),
        "threads": number(r'key: "intra_op_threads" value: \{ string_value: "(\d+)"', 1),
        "instances": number(r"count: (\d+) kind: KIND_CPU", 1),
        "batching": "dynamic_batching" in config,
    }


def triton_variants(state: dict | None = None) -> list[Variant]:
    state = state or shipped_state()
    spin = "1" if not state["spinning"] else "0"
    variants = [
        Variant("ref", f"shipped: {describe(state)}"),
        Variant(
            "spinning_" + ("on" if spin == "1" else "off"),
            f"ONNX Runtime thread spinning {'on (its default)' if spin == '1' else 'off'}",
            parameters={"session.intra_op.allow_spinning": spin, "session.inter_op.allow_spinning": spin},
        ),
        Variant(
            "ragged_" + ("off" if state["ragged"] else "on"),
            "allow_ragged_batch off: only equal-shape requests share a batch"
            if state["ragged"]
            else "allow_ragged_batch on: mixed widths share a batch" + ("" if state["length_grouped"] else " (the backend pads to the widest)"),
            ragged=not state["ragged"],
        ),
    ]
    for delay in (0, 500, 2000, 5000):
        if delay != state["queue_delay_us"]:
            variants.append(Variant(f"delay_{delay}", f"max_queue_delay_microseconds {delay}", queue_delay_us=delay))
    variants.append(Variant("no_preferred", "no preferred_batch_size (batch whatever is queued, up to 32)", preferred_batch_sizes=[]))
    if state["instances"] == 1:
        if state["threads"] != 1:
            variants.append(Variant("threads_1", "intra_op_threads 1", intra_op_threads=1))
        variants.append(Variant("instances_2_threads_1", "2 instances × 1 ORT thread", instances=2, intra_op_threads=1))
    else:
        variants.append(Variant("1_instance_2_threads", "1 instance × 2 ORT threads", instances=1, intra_op_threads=2))
        variants.append(Variant("1_instance_1_thread", "1 instance × 1 ORT thread", instances=1, intra_op_threads=1))
    if state["batching"]:
        variants.append(Variant("no_batching", "dynamic_batching removed", dynamic_batching=False))
    return variants


def skip_layer_norm_fused_int8() -> Path | None:
    """The served INT8 graph as the optimizer's defaults build it: from the same fp32 graph, SkipLayerNormalization fused."""
    from export.quantize import optimize_transformer, quantize_int8

    work = Path(tempfile.mkdtemp(prefix="emotune-bench-fused-"))
    fp32, _ = fp32_onnx(work)
    if fp32 is None:
        return None
    fused = optimize_transformer(fp32, work / "model_optimized.onnx", num_heads=0, hidden_size=0)  # attention is fused already
    return quantize_int8(fused, work / "model_int8.onnx")


def describe(state: dict) -> str:
    return (
        f"INT8, dynamic batching {'on' if state['batching'] else 'off'} (queue delay {state['queue_delay_us']} µs), "
        f"ragged {'on' if state['ragged'] else 'off'}{', length-grouped runs' if state['length_grouped'] else ''}, "
        f"{state['instances']} instance × {state['threads']} ORT threads, spinning {'on' if state['spinning'] else 'off'}"
    )


def _row(change: str, level: str, concurrency: int, throughput: float | None, ref: float | None, **extra) -> dict:
    gain = f"{throughput / ref:.2f}×" if throughput and ref else None
    return {"change": change, "level": level, "concurrency": concurrency, "throughput": throughput, "gain": gain, **extra}


def triton_level(out: Path, quick: bool, concurrency: int) -> tuple[list[dict], list[Variant]]:
    """Every variant at ``concurrency``; the reference and the queue-delay variants also at 1 (a delay costs most there)."""
    variants = triton_variants()
    if quick:
        variants = variants[:2]  # ref and one change: the plumbing, not the findings
    elif (fused := skip_layer_norm_fused_int8()) is not None:
        variants.append(
            Variant(
                "skip_layer_norm_fused",
                "residual Add + LayerNormalization fused into SkipLayerNormalization "
                "(ONNX Runtime's optimizer default; the INT8 graph shipped before)",
                onnx=fused,
            )
        )
    levels = sorted({1, concurrency})
    for v in variants:
        v.concurrency = levels if v.name == "ref" or v.queue_delay_us is not None else [concurrency]
    result = sweep(variants, [concurrency], out, quick, n_texts=64 if quick else 1000, label="tuning")
    by_name = {v.name: v for v in variants}
    refs = {p["concurrency"]: p["throughput_infer_per_s"] for p in result["points"] if p["model"] == "ref" and "error" not in p}
    rows = []
    for p in sorted(result["points"], key=lambda p: p["concurrency"] != concurrency):  # the main concurrency first
        v, c = by_name[p["model"]], p["concurrency"]
        if "error" in p:
            rows.append(_row(v.description, "triton", c, None, refs.get(c), error=p["error"][-200:]))
            continue
        rows.append(
            _row(
                f"{v.name}: {v.description}",
                "triton",
                c,
                p["throughput_infer_per_s"],
                refs.get(c),
                p50_ms=p["p50_ms"],
                p99_ms=p["p99_ms"],
                avg_executed_batch=p["avg_executed_batch"],
                cpu_ms=f"server {p['server_cpu_ms_per_infer']}",
                executed_batch_sizes=p["executed_batch_sizes"],
                variant=v.name,
            )
        )
    return rows, variants


def _repository_with(variant: Variant | None, work: Path) -> Path:
    """A repository serving ``text_emotion`` with the variant's edits (other models linked unchanged)."""
    if variant is None:
        return REPOSITORY
    renamed = Variant(**{**variant.__dict__, "name": TEXT_MODEL})
    repo = build_repository(work, [renamed])
    for model in served_models():
        if model != TEXT_MODEL:
            link_model_copy(REPOSITORY / model, repo / model)
    return repo


# Gateway code changes measured on a patched temporary copy of the code: (file, old, new); skipped once applied.
GATEWAY_PATCHES = {
    "async_deps": (
        "dependencies as `async def` (FastAPI runs plain `def` dependencies in a thread pool: 5 hops per request)",
        [
            ("gateway/deps.py", "\ndef _", "\nasync def _"),
            ("gateway/routes/text.py", "\ndef require_json", "\nasync def require_json"),
            ("gateway/uploads.py", "\ndef require_multipart", "\nasync def require_multipart"),
        ],
    ),
    "gc_freeze": (
        "the gateway freezes what start-up built out of the garbage collector's sight (gc.freeze() after the lifespan's start-up: "
        "a full collection then scans only what requests allocate, not ~230k long-lived objects)",
        [("gateway/app.py", "        try:\n            yield\n", "        gc.collect()\n        gc.freeze()\n        try:\n            yield\n")],
    ),
    "orjson": (
        "/text_emotion answers with orjson bytes (a Response) instead of FastAPI's jsonable_encoder + json.dumps",
        [
            (
                "gateway/routes/text.py",
                '    return results[0] if body.text is not None else {"results": results}',
                '    return __import__("fastapi").Response(__import__("orjson").dumps('
                'results[0] if body.text is not None else {"results": results}), media_type="application/json")',
            )
        ],
    ),
}
CODE_DIRS = ("gateway", "emotune", "export", "training", "bench")


def patch_state(name: str, root: Path | None = None) -> str:
    """ "forward" when the code lacks the change, "reverse" when it has it (shipped), "" when neither matches."""
    root = root or Path(__file__).resolve().parents[1]
    edits = GATEWAY_PATCHES[name][1]
    texts = [(root / rel).read_text() for rel, _, _ in edits]
    if all(old in t and new.strip() not in t for t, (_, old, new) in zip(texts, edits)):
        return "forward"
    if all(new.strip() in t for t, (_, _, new) in zip(texts, edits)):
        return "reverse"
    return ""


def patched_code(work: Path, names: list[str], reverse: bool = False) -> Path | None:
    """A copy of the code with the named gateway patches applied (``reverse``: undone); None when one does not apply."""
    root = Path(__file__).resolve().parents[1]
    target = work / "code"
    for d in CODE_DIRS:
        shutil.copytree(root / d, target / d, ignore=shutil.ignore_patterns("__pycache__", "report"))
    for name in names:
        if patch_state(name, target) != ("reverse" if reverse else "forward"):
            return None
        for rel, old, new in GATEWAY_PATCHES[name][1]:
            path = target / rel
            a, b = (new.lstrip("\n"), old.lstrip("\n")) if reverse else (old, new)
            path.write_text(path.read_text().replace(a, b))
    return target


@dataclass
class GatewayExperiment:
    change: str
    variant: Variant | None = None  # Triton-side change
    workers: int = 1
    recommend: bool = False
    patches: list[str] = field(default_factory=list)  # gateway code changes
    reverse: bool = False  # undo the (shipped) patches instead
    env: dict[str, str] = field(default_factory=dict)  # gateway settings (EMOTUNE_*)
    concurrency: int | None = None  # None: the run's concurrency


def gateway_level(out: Path, quick: bool, concurrency: int, best: Variant | None, timing: tuple[float, float] | None = None) -> list[dict]:
    warmup, duration = timing or ((0.5, 2.0) if quick else (3.0, 15.0))
    texts = real_texts(64 if quick else 1000)
    ref = "ref: shipped repository and gateway, 1 uvicorn worker, recommend=false"
    coalesce_off = "text coalescing off (EMOTUNE_TEXT_COALESCE=false): each request its own call, Triton's dynamic batcher batches them"
    off_env = {"EMOTUNE_TEXT_COALESCE": "false"}
    # The coalescing switch is measured at both ends, each right after its reference (on by default only if both gain).
    experiments = [GatewayExperiment(ref), GatewayExperiment(coalesce_off, env=off_env)]
    if not quick:
        experiments += [
            GatewayExperiment(ref, concurrency=1),
            GatewayExperiment(coalesce_off, env=off_env, concurrency=1),
            GatewayExperiment(
                "text coalescing with 2 calls in flight of any size (the reference has 8 of ≤ 120 tokens)",
                env={"EMOTUNE_TEXT_COALESCE_IN_FLIGHT": "2", "EMOTUNE_TEXT_COALESCE_MAX_TOKENS": "2048"},
            ),
            GatewayExperiment("uvicorn access log on (EMOTUNE_LOG_LEVEL=info; the benchmarks run at warning)", env={"EMOTUNE_LOG_LEVEL": "info"}),
            GatewayExperiment("2 uvicorn workers", workers=2),
            GatewayExperiment("recommend=true (the answer carries 10 tracks)", recommend=True),
        ]
        for n in GATEWAY_PATCHES:
            state = patch_state(n)
            if state == "forward":
                experiments.append(GatewayExperiment(f"gateway: {GATEWAY_PATCHES[n][0]}", patches=[n]))
            elif state == "reverse":
                experiments.append(GatewayExperiment(f"gateway, undone (shipped as: {GATEWAY_PATCHES[n][0]})", patches=[n], reverse=True))
        if best is not None:
            experiments.append(GatewayExperiment(f"Triton {best.name}: {best.description}", variant=best))
    rows, ref_tp = [], {}
    models = served_models()
    groups: dict[str, list[GatewayExperiment]] = {}
    for e in experiments:  # one tritonserver per Triton-side variant
        groups.setdefault(e.variant.name if e.variant else "", []).append(e)
    i = 0
    for key, group in groups.items():
        with tempfile.TemporaryDirectory(prefix="emotune-tuning-") as tmp:
            repo = _repository_with(group[0].variant, Path(tmp))
            with triton_server(repo, models, out / "logs" / f"tuning_gateway_{key or 'ref'}_tritonserver.log") as server:
                for e in group:
                    i += 1
                    c = e.concurrency or concurrency
                    code = patched_code(Path(tmp) / f"g{i}", e.patches, e.reverse) if e.patches else None
                    if e.patches and code is None:
                        rows.append(_row(e.change, "gateway", c, None, ref_tp.get(c), note="already applied in the code: nothing to compare"))
                        continue
                    requests = text_requests(texts, "/text_emotion" + ("" if e.recommend else "?recommend=false"))
                    with gateway(
                        server.grpc_port, REPOSITORY, models, out / "logs" / f"tuning_gateway_{i}.log", workers=e.workers, extra_env=e.env, cwd=code
                    ) as (url, pid):
                        point = sweep_load(url, requests, [c], warmup, duration, f"tuning {i}", {"gateway": pid, "tritonserver": server.process.pid})[
                            0
                        ]
                    ref_tp.setdefault(c, point["throughput_rps"])
                    rows.append(
                        _row(
                            e.change,
                            "gateway",
                            c,
                            point["throughput_rps"],
                            ref_tp[c],
                            p50_ms=point["p50_ms"],
                            p99_ms=point["p99_ms"],
                            errors=point["errors"],
                            cpu_ms=", ".join(f"{k} {v}" for k, v in point["cpu_ms_per_request"].items()),
                        )
                    )
                    print(f"[tuning] gateway {e.change}: {point['throughput_rps']} req/s p99 {point['p99_ms']} ms", flush=True)
    return rows


def run(quick: bool, out: Path, gateway_only: bool = False) -> dict:
    """``gateway_only``: re-measure the gateway rows and keep the Triton rows (and their conclusions) of ``out/tuning.json``."""
    concurrency = 4 if quick else 32
    if gateway_only:
        previous = json.loads((out / "tuning.json").read_text())
        rows = [r for r in previous["rows"] if r["level"] == "triton"] + gateway_level(out, quick, concurrency, None)
        result = {
            **previous,
            "rows": rows,
            "gateway_rows_machine": machine(),
            "gateway_rows_measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        }
        write_json(out / "tuning.json", result)
        return result
    rows, variants = triton_level(out, quick, concurrency)
    by_name = {v.name: v for v in variants}
    ref = next((r for r in rows if r.get("variant") == "ref" and r["concurrency"] == concurrency), None)
    candidates = [r for r in rows if r.get("variant") not in (None, "ref", "no_batching") and r["throughput"] and r["concurrency"] == concurrency]
    state = shipped_state()
    best_row = max(candidates, key=lambda r: r["throughput"], default=None)
    best = by_name[best_row["variant"]] if best_row and ref and best_row["throughput"] > 1.05 * ref["throughput"] else None
    rows += gateway_level(out, quick, concurrency, best)
    conclusions = []
    if best_row and ref:
        conclusions.append(
            f"best Triton-level variant at concurrency {concurrency}: {best_row['change']} "
            f"({best_row['throughput']} vs {ref['throughput']} infer/s, {best_row['gain']})"
            + ("" if best else "; under 5% — within this machine's noise, the shipped configuration stays")
        )
    result = {
        "method": f"Each row changes one thing against the reference and is measured in the same run at concurrency {concurrency} "
        "(the queue-delay rows also at concurrency 1, against the reference at 1) "
        "(Triton rows: perf_analyzer, every variant in one server; gateway rows: 15 s closed-loop load after a 3 s warm-up, "
        "a fresh gateway per row, one tritonserver per Triton-side variant). The machine is noisy (±10–15%, and more while "
        "ONNX Runtime threads spin: the shipped reference swung from 130 to 205 req/s between runs): read gains under ~1.1× "
        "as no change, and trust the CPU ms per request column, which hardly moves with the noise.",
        "rows": rows,
        "best_triton_change": best.name if best else None,
        "conclusions": conclusions,
        "machine": machine(),
        "shipped": state,
    }
    write_json(out / "tuning.json", result)
    return result


def main(argv: list[str] | None = None) -> None:
    p = step_parser(__doc__)
    p.add_argument("--gateway-only", action="store_true", help="re-measure the gateway rows only; the Triton rows stay from the last run")
    args = p.parse_args(argv)
    print(json.dumps(run(args.quick, args.out, args.gateway_only)["rows"], indent=2))


if __name__ == "__main__":
    main()
