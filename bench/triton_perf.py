"""Triton-level benchmark: perf_analyzer (the binary ``tritonclient==2.51.0`` installs) over gRPC with real token inputs.

Every variant is a copy of the served model folder under its own name in one temporary repository, so one
tritonserver holds them all and they are measured back to back under the same conditions:

- ``text_emotion``           the repository as shipped (INT8, dynamic batching);
- ``text_emotion_nobatch``   the same without the ``dynamic_batching`` block: every request runs alone;
- ``text_emotion_fp32``      the optimized fp32 ONNX (the INT8 model's source), dynamic batching on;
- ``text_emotion_fp32_nobatch`` fp32 without dynamic batching.

For each variant and concurrency, perf_analyzer measures throughput and p50/p95/p99; Triton's
``/v2/models/<m>/stats`` before and after gives the batch sizes it actually executed.

    python -m bench.triton_perf [--quick] [--out bench/report]
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

from bench.common import (
    REPOSITORY,
    SHARED_DATA,
    TEXT_MODEL,
    TEXT_RUN,
    link_model_copy,
    machine,
    real_texts,
    step_parser,
    tree_cpu_seconds,
    triton_server,
    write_json,
)

FULL_CONCURRENCY = [1, 2, 4, 8, 16, 32]
QUICK_CONCURRENCY = [1, 4]


# ---------------------------------------------------------------------------------------------- model variants
@dataclass
class Variant:
    """One model folder in the temporary repository: the served model with config edits and maybe another ONNX."""

    name: str
    description: str
    dynamic_batching: bool = True
    queue_delay_us: int | None = None  # None: keep the shipped value
    preferred_batch_sizes: list[int] | None = None  # None: keep; []: remove the line
    instances: int | None = None
    intra_op_threads: int | None = None
    onnx: Path | None = None  # None: the shipped model.onnx
    ragged: bool | None = None  # allow_ragged_batch on the variable-width inputs: True adds it, False removes it, None keeps
    # config parameters the onnxruntime_cpu backend reads (ONNX Runtime options, "session.*" entries): set or replaced
    parameters: dict[str, str] = field(default_factory=dict)
    concurrency: list[int] = field(default_factory=list)  # empty: the sweep's list
    source: str = TEXT_MODEL  # the served model this variant copies


def edit_config(text: str, v: Variant) -> str:
    """The shipped ``config.pbtxt`` with the variant's edits (renamed so several variants share one server)."""
    text = re.sub(r'^name: ".*"$', f'name: "{v.name}"', text, count=1, flags=re.M)
    if not v.dynamic_batching:  # (ragged batching means nothing without the dynamic batcher)
        text = re.sub(r"^dynamic_batching \{.*?^\}\n", "", text, flags=re.M | re.S)
        text = re.sub(r"[ \t]*allow_ragged_batch: true", "", text)
    else:
        if "dynamic_batching" not in text:
            text += "dynamic_batching { }\n"
        if v.queue_delay_us is not None:
            if "max_queue_delay_microseconds" in text:
                text = re.sub(r"max_queue_delay_microseconds: \d+", f"max_queue_delay_microseconds: {v.queue_delay_us}", text)
            else:
                text = text.replace("dynamic_batching {", f"dynamic_batching {{\n  max_queue_delay_microseconds: {v.queue_delay_us}", 1)
        if v.preferred_batch_sizes is not None:
            text = re.sub(r"^  preferred_batch_size: \[.*\]\n", "", text, flags=re.M)
            if v.preferred_batch_sizes:
                sizes = ", ".join(map(str, v.preferred_batch_sizes))
                text = text.replace("dynamic_batching {", f"dynamic_batching {{\n  preferred_batch_size: [ {sizes} ]", 1)
    if v.ragged is False:
        text = re.sub(r"[ \t]*allow_ragged_batch: true", "", text)
    elif v.ragged and "allow_ragged_batch" not in text:
        text = re.sub(r"(\{ name: \"\w+\" data_type: \w+ dims: \[ -1 \])( \})", r"\1 allow_ragged_batch: true\2", text)
    if v.instances is not None:
        text = re.sub(r"count: \d+ kind: KIND_CPU", f"count: {v.instances} kind: KIND_CPU", text)
    parameters = {**({"intra_op_threads": str(v.intra_op_threads)} if v.intra_op_threads is not None else {}), **v.parameters}
    for key, value in parameters.items():
        text = set_parameter(text, key, value)
    return text


def set_parameter(text: str, key: str, value: str) -> str:
    """A config's ``parameters`` entry ``key`` set to ``value``: replaced where the config has it, else added."""
    line = f'parameters: {{ key: "{key}" value: {{ string_value: "{value}" }} }}\n'
    pattern = re.compile(rf'^parameters: \{{ key: "{re.escape(key)}" value: \{{ string_value: ".*" \}} \}}\n', re.M)
    if pattern.search(text):
        return pattern.sub(lambda _: line, text, count=1)
    return text.replace("model_warmup [", line + "model_warmup [", 1) if "model_warmup [" in text else text + line


def build_repository(work: Path, variants: list[Variant], source: Path = REPOSITORY) -> Path:
    """``work/python/<variant>/``: linked copies of ``source/<variant.source>`` with edited configs."""
    repo = work / "python"
    repo.mkdir(parents=True, exist_ok=True)
    for v in variants:
        folder = link_model_copy(source / v.source, repo / v.name, v.onnx)
        (folder / "config.pbtxt").write_text(edit_config((source / v.source / "config.pbtxt").read_text(), v))
    return repo


def fp32_onnx(work: Path | None) -> tuple[Path | None, str]:
    """The optimized fp32 ONNX the INT8 model was quantized from: the text run's, or exported here from the baseline model."""
    candidate = TEXT_RUN / "onnx" / "model_optimized_cpu.onnx"
    if candidate.exists():
        return candidate, str(candidate)
    work = work or Path(tempfile.mkdtemp(prefix="emotune-bench-fp32-"))
    try:  # fresh clone: export the same architecture (checkpoint if any, else pretrained encoder + random head)
        import torch

        from bench.baseline_flask import load_model
        from export.onnx import export_onnx
        from export.quantize import optimize_transformer
        from gateway.preprocessing.text import TextTokenizer
        from training.text import encoder_dir

        model, _, _labels, max_length, origin = load_model()

        class Probabilities(torch.nn.Module):
            def __init__(self, m):
                super().__init__()
                self.m = m

            def forward(self, input_ids, attention_mask):
                return torch.softmax(self.m(input_ids, attention_mask), dim=-1)

        tok = TextTokenizer(encoder_dir() / "tokenizer.json", max_length)
        example = {k: torch.from_numpy(v) for k, v in tok.encode(["export example", "a second example text"]).items()}
        axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"}, "probabilities": {0: "batch"}}
        raw = export_onnx(Probabilities(model).eval(), example, ["probabilities"], axes, work / "fp32" / "model_fp32.onnx")
        cfg = model.encoder.config
        out = optimize_transformer(raw, work / "fp32" / "model_optimized_cpu.onnx", cfg.num_attention_heads, cfg.hidden_size, skip_layer_norm=False)
        return out, f"exported by the benchmark from {origin}"
    except Exception as exc:  # no [train] extra: skip the fp32 variants
        print(f"[triton] no fp32 ONNX available ({exc}); skipping the fp32 variants", file=sys.stderr)
        return None, f"unavailable: {exc}"


# ---------------------------------------------------------------------------------------------- perf_analyzer
def perf_analyzer_env() -> dict[str, str]:
    """perf_analyzer needs libb64.so.0d and libcudart.so.12: symlink the wheel's hashed copies under plain names."""
    from emotune.triton_server import _libs_dir

    libs = _libs_dir()
    target = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "emotune" / "perf_analyzer_libs"
    target.mkdir(parents=True, exist_ok=True)
    for pattern, plain in (("libb64-*.so.0d", "libb64.so.0d"), ("libcudart-*.so.12*", "libcudart.so.12")):
        found = sorted(libs.glob(pattern))
        link = target / plain
        if found and not link.exists():
            link.symlink_to(found[0])
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(target), str(libs), env.get("LD_LIBRARY_PATH")]))
    return env


def perf_analyzer_binary() -> Path:
    path = Path(sys.executable).parent / "perf_analyzer"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: `pip install tritonclient[grpc,http]==2.51.0` installs it")
    return path


def write_input_data(path: Path, n: int, model: str = TEXT_MODEL, repository: Path = REPOSITORY) -> dict:
    """perf_analyzer ``--input-data`` JSON: one request per real input, preprocessed as the gateway does it.

    text: test-split sentences, tokenized and padded like the gateway; speech: 3 s feature windows of RAVDESS
    clips; faces: FER2013 face crops (the model input without detection)."""
    from gateway.model_info import ModelInfo

    info = ModelInfo.load(repository / model)
    pre = info.preprocessing
    if model == TEXT_MODEL:
        from gateway.preprocessing.text import TextTokenizer

        tokenizer = TextTokenizer(info.directory / pre["tokenizer"], pre["max_length"], pre.get("pad_to_multiple", 1))
        data, widths = [], []
        for text in real_texts(n):
            enc = tokenizer.encode([text])
            width = enc["input_ids"].shape[1]
            widths.append(width)
            data.append({name: {"content": enc[name][0].tolist(), "shape": [width]} for name in ("input_ids", "attention_mask")})
        path.write_text(json.dumps({"data": data}))
        counts = {str(w): widths.count(w) for w in sorted(set(widths))}
        return {"requests": len(data), "padded_widths": counts, "pad_to_multiple": pre.get("pad_to_multiple", 1)}
    rows: list[dict[str, np.ndarray]] = []  # one request each: {input name: array without the batch axis}
    if model == "speech_emotion":
        from gateway.services.emotion import SpeechPreprocessing

        speech_preprocessing = SpeechPreprocessing.of(info)
        for clip in sorted((SHARED_DATA / "ravdess").glob("Actor_*/*.*"))[::37][:32]:
            speech = speech_preprocessing.prepare(clip.read_bytes())
            arrays = {speech_preprocessing.input_name: speech.windows, "lengths": speech.lengths}  # by input name, as the service sends them
            rows += [{t.name: arrays[t.name][i] for t in info.inputs} for i in range(len(speech.windows))]
    else:  # a face model
        from gateway.preprocessing.image import prepare_faces

        for image in sorted((SHARED_DATA / "fer2013" / "val").glob("*/*.jpg"))[::37][:n]:
            faces = prepare_faces(image.read_bytes(), detect=False, preprocessing=pre).inputs
            rows += [{info.inputs[0].name: f} for f in faces]
    if not rows:
        raise FileNotFoundError(f"no real inputs for {model} under {SHARED_DATA}")
    rows = rows[: min(n, 32)]  # a few dozen distinct requests: each is large in perf_analyzer's JSON
    dtypes = {t.name: t.dtype for t in info.inputs}
    data = [
        {name: {"content": np.asarray(a, dtype=dtypes[name]).ravel().tolist(), "shape": list(np.shape(a))} for name, a in row.items()} for row in rows
    ]
    path.write_text(json.dumps({"data": data}))
    return {"requests": len(data), "shapes": {name: list(np.shape(a)) for name, a in rows[0].items()}}


def model_stats(http_url: str, model: str) -> dict:
    stats = httpx.get(f"{http_url}/v2/models/{model}/stats", timeout=10).json()["model_stats"][0]
    batches = {int(b["batch_size"]): int(b["compute_infer"]["count"]) for b in stats.get("batch_stats", [])}
    return {"inference_count": int(stats.get("inference_count", 0)), "execution_count": int(stats.get("execution_count", 0)), "batches": batches}


def stats_delta(before: dict, after: dict) -> dict:
    hist = {b: after["batches"].get(b, 0) - before["batches"].get(b, 0) for b in after["batches"]}
    hist = {b: n for b, n in sorted(hist.items()) if n > 0}
    inferences = after["inference_count"] - before["inference_count"]
    executions = after["execution_count"] - before["execution_count"]
    return {
        "executed_batch_sizes": {str(b): n for b, n in hist.items()},
        "avg_executed_batch": round(inferences / executions, 2) if executions else None,
        "inferences": inferences,
        "executions": executions,
    }


def run_point(server, model: str, data: Path, concurrency: int, work: Path, quick: bool) -> dict:
    csv_path = work / f"{model}_c{concurrency}.csv"
    interval = 1000 if quick else 3000
    cmd = [
        str(perf_analyzer_binary()),
        "-m",
        model,
        "-i",
        "grpc",
        "-u",
        server.grpc_url,
        "--input-data",
        str(data),
        f"--concurrency-range={concurrency}:{concurrency}",
        f"--measurement-interval={interval}",
        "--stability-percentage=50" if not quick else "--stability-percentage=100",
        f"--max-trials={4 if quick else 10}",
        "-f",
        str(csv_path),
    ]
    before = model_stats(server.http_url, model)
    cpu_before = tree_cpu_seconds(server.process.pid)
    started = time.monotonic()
    result = subprocess.run(cmd, env=perf_analyzer_env(), capture_output=True, text=True, timeout=300)
    unstable = result.returncode != 0 and "stable measurement" in result.stdout + result.stderr
    if unstable:  # a noisy 2-core machine: measure once more, longer, accepting any spread (the point is marked)
        retry = [a for a in cmd if not a.startswith(("--measurement-interval", "--stability-percentage"))]
        retry += [f"--measurement-interval={interval * 2}", "--stability-percentage=100"]
        before = model_stats(server.http_url, model)
        cpu_before = tree_cpu_seconds(server.process.pid)
        result = subprocess.run(retry, env=perf_analyzer_env(), capture_output=True, text=True, timeout=300)
    elapsed = time.monotonic() - started
    after = model_stats(server.http_url, model)
    cpu = tree_cpu_seconds(server.process.pid) - cpu_before
    if result.returncode != 0 or not csv_path.exists():
        return {"model": model, "concurrency": concurrency, "error": (result.stdout + result.stderr).strip()[-800:]}
    with csv_path.open() as f:
        row = next(csv.DictReader(f))
    us = lambda key: round(float(row[key]) / 1000.0, 2) if row.get(key) not in (None, "") else None  # noqa: E731
    point = {
        "model": model,
        "concurrency": concurrency,
        "throughput_infer_per_s": round(float(row["Inferences/Second"]), 1),
        "p50_ms": us("p50 latency"),
        "p95_ms": us("p95 latency"),
        "p99_ms": us("p99 latency"),
        "server_queue_ms": us("Server Queue"),
        "server_compute_ms": us("Server Compute Infer"),
        "wall_s": round(elapsed, 1),
        "unstable_retry": unstable,
        **stats_delta(before, after),
    }
    # CPU the server spent (gRPC, batcher, python-backend stub, ONNX Runtime) per inference it ran over the point
    point["server_cpu_ms_per_infer"] = round(1000 * cpu / point["inferences"], 2) if point["inferences"] else None
    print(
        f"[triton] {model:<28} c={concurrency:<3} {point['throughput_infer_per_s']:>7.1f}/s  p50 {point['p50_ms']:>7.1f} ms"
        f"  p99 {point['p99_ms']:>7.1f} ms  avg batch {point['avg_executed_batch']}  server CPU ms/infer {point['server_cpu_ms_per_infer']}",
        flush=True,
    )
    return point


def sweep(variants: list[Variant], concurrency: list[int], out: Path, quick: bool, n_texts: int, label: str = "triton") -> dict:
    """Start one tritonserver with every variant, run perf_analyzer over each (variant, concurrency)."""
    with tempfile.TemporaryDirectory(prefix=f"emotune-bench-{label}-") as tmp:
        work = Path(tmp)
        repo = build_repository(work, variants)
        data, inputs = {}, {}
        for source in dict.fromkeys(v.source for v in variants):
            data[source] = work / f"input_data_{source}.json"
            inputs[source] = write_input_data(data[source], n_texts, source)
        log = out / "logs" / f"{label}_tritonserver.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.unlink(missing_ok=True)
        points = []
        with triton_server(repo, [v.name for v in variants], log) as server:
            for v in variants:
                for c in v.concurrency or concurrency:
                    points.append(run_point(server, v.name, data[v.source], c, work, quick))
        configs = {v.name: (repo / v.name / "config.pbtxt").read_text() for v in variants}
    return {
        "variants": {
            v.name: {
                "description": v.description,
                "onnx": str(v.onnx) if v.onnx else "shipped model.onnx",
                "config": configs[v.name],
                "model": v.source,
            }
            for v in variants
        },
        "inputs": inputs.get(TEXT_MODEL) or next(iter(inputs.values())),
        "inputs_by_model": inputs,
        "points": points,
    }


def summarize(result: dict) -> dict:
    """Headline ratios: dynamic batching vs batch-1 serial; INT8 vs fp32."""
    by = {(p["model"], p["concurrency"]): p for p in result["points"] if "error" not in p}
    best = lambda m: max((p for (n, _), p in by.items() if n == m), key=lambda p: p["throughput_infer_per_s"], default=None)  # noqa: E731
    serials = [p for p in (by.get((f"{TEXT_MODEL}_nobatch", 1)), by.get((f"{TEXT_MODEL}_nobatch_2threads", 1))) if p]
    serial = max(serials, key=lambda p: p["throughput_infer_per_s"], default=None)  # the strongest batch-1 serial
    dyn_best = best(TEXT_MODEL)
    top = max((c for (n, c) in by if n == TEXT_MODEL), default=None)
    dyn_top = by.get((TEXT_MODEL, top)) if top else None
    summary = {}
    if serial and dyn_best:
        summary["serial_batch1_infer_per_s"] = serial["throughput_infer_per_s"]
        summary["serial_batch1_variant"] = serial["model"]
        summary["dynamic_best_infer_per_s"] = dyn_best["throughput_infer_per_s"]
        summary["dynamic_best_concurrency"] = dyn_best["concurrency"]
        summary["dynamic_vs_serial"] = round(dyn_best["throughput_infer_per_s"] / serial["throughput_infer_per_s"], 2)
    if dyn_best and (shipped_c1 := by.get((TEXT_MODEL, 1))):  # the looser reading: the shipped model, one request at a time
        summary["dynamic_vs_shipped_c1"] = round(dyn_best["throughput_infer_per_s"] / shipped_c1["throughput_infer_per_s"], 2)
    if dyn_top and (nob := by.get((f"{TEXT_MODEL}_nobatch", top))):
        summary[f"dynamic_vs_nobatch_at_c{top}"] = round(dyn_top["throughput_infer_per_s"] / nob["throughput_infer_per_s"], 2)
    if dyn_best and (fp := best(f"{TEXT_MODEL}_fp32")):
        summary["int8_vs_fp32_best"] = round(dyn_best["throughput_infer_per_s"] / fp["throughput_infer_per_s"], 2)
    if serial and (fps := by.get((f"{TEXT_MODEL}_fp32_nobatch", 1))):
        summary["int8_vs_fp32_serial"] = round(serial["throughput_infer_per_s"] / fps["throughput_infer_per_s"], 2)
    for name in {p["model"] for p in result["points"]}:
        other_serial = by.get((f"{name}_nobatch", 1))
        if name.startswith(TEXT_MODEL) or name.endswith("_nobatch") or not other_serial or not (b := best(name)):
            continue
        summary[f"{name}_dynamic_vs_serial"] = round(b["throughput_infer_per_s"] / other_serial["throughput_infer_per_s"], 2)
    return summary


def default_variants(quick: bool, out: Path) -> tuple[list[Variant], dict]:
    variants = [
        Variant(TEXT_MODEL, "INT8, dynamic batching (as shipped)"),
        Variant(f"{TEXT_MODEL}_nobatch", "INT8, dynamic batching off: each request runs alone", dynamic_batching=False),
    ]
    notes = {}
    config = (REPOSITORY / TEXT_MODEL / "config.pbtxt").read_text()
    if not quick and 'key: "intra_op_threads" value: { string_value: "1" }' in config:
        # the shipped instances run 1 thread each: batch-1 serial is fastest on one instance with 2 threads; the target compares with that
        variants.append(
            Variant(
                f"{TEXT_MODEL}_nobatch_2threads",
                "INT8, dynamic batching off, 1 instance × 2 ORT threads: the fastest batch-1 serial",
                dynamic_batching=False,
                instances=1,
                intra_op_threads=2,
                concurrency=[1],
            )
        )
    if not quick:
        for model in sorted(p.parent.name for p in REPOSITORY.glob("*/config.pbtxt")):
            if model != TEXT_MODEL:
                variants += [
                    Variant(model, f"{model} as shipped", source=model),
                    Variant(f"{model}_nobatch", f"{model}, dynamic batching off", dynamic_batching=False, source=model),
                ]
        onnx, origin = fp32_onnx(None)
        notes["fp32_onnx"] = origin
        if onnx is not None:
            variants += [
                Variant(f"{TEXT_MODEL}_fp32", "optimized fp32 ONNX, dynamic batching", onnx=onnx),
                Variant(
                    f"{TEXT_MODEL}_fp32_nobatch", "optimized fp32 ONNX, dynamic batching off", dynamic_batching=False, onnx=onnx, concurrency=[1, 32]
                ),
            ]
    return variants, notes


def run(quick: bool, out: Path) -> dict:
    variants, notes = default_variants(quick, out)
    result = sweep(variants, QUICK_CONCURRENCY if quick else FULL_CONCURRENCY, out, quick, n_texts=64 if quick else 1000)
    result.update(
        {
            "notes": notes,
            "summary": summarize(result),
            "machine": machine(),
            "perf_analyzer": "perf_analyzer -i grpc --input-data <real sentences> --concurrency-range C:C "
            + ("--measurement-interval=1000 --max-trials=3" if quick else "--measurement-interval=3000 --stability-percentage=50 --max-trials=10"),
        }
    )
    write_json(out / "triton.json", result)
    return result


def main(argv: list[str] | None = None) -> None:
    p = step_parser(__doc__)
    args = p.parse_args(argv)
    result = run(args.quick, args.out)
    print(json.dumps(result["summary"], indent=2))


if __name__ == "__main__":
    main()
