"""The report: one ``report.json``, a markdown ``REPORT.md`` with the headline ratios and every table, and ``report.png``.

It reads what the benchmarks wrote into the report folder (``triton.json``, ``gateway.json``, ``ceiling.json``,
``tuning.json``; any may be missing) and the exports' accuracy reports (``model_repository/reports/<model>``).

    python -m bench.report [--out bench/report]
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from bench.common import REPORTS, TEXT_MODEL, repo_relative, step_parser, write_json

TARGETS = {
    "gateway_throughput_ratio_c32": 8.0,
    "triton_dynamic_vs_serial": 2.5,
    "accuracy_delta_points": 0.5,
    "gateway_vs_model_ceiling_c32": 0.80,
    "gateway_p99_ms_c32": 150.0,
    "gateway_p50_ms_c1": 6.0,
    "gateway_speech_cpu_ms": 5.0,
}
# Per model, as its export report names them: the split, the FP32 ONNX reference, then each optimized variant it serves.
ACCURACY_KEYS = {
    TEXT_MODEL: ("test", "test_onnx_fp32", ("test_onnx_optimized_fp32", "test_onnx_int8 (served on CPU)")),
    "speech_emotion": (
        "5-fold actor cross-validation",
        "cv_out_of_fold_onnx_fp32",
        ("cv_out_of_fold_onnx_int8 (python flavour, CPU)", "cv_out_of_fold_onnx_fp16 (onnxruntime flavour, GPU) (run here on CPU)"),
    ),
    "face_emotion": (
        "val_dedup",
        "onnx_fp32: val_dedup",
        ("onnx_fp32, FP16-stored weights (served on CPU): val_dedup", "onnx_fp16 (GPU flavour, run here on CPU): val_dedup"),
    ),
}


def _load(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def accuracy(reports: Path = REPORTS) -> dict | None:
    """Accuracy of each model's optimized variants vs its FP32 ONNX graph, from the exports' own reports."""
    models = {}
    for model, (split, ref_key, keys) in ACCURACY_KEYS.items():
        path = reports / model / "report.json"
        report = _load(path)
        if not report or ref_key not in report:
            continue
        ref = report[ref_key]["accuracy"]
        rows = {"onnx_fp32": {"accuracy": ref, "delta_points": 0.0}}
        for key in keys:
            if key in report:
                acc = report[key]["accuracy"]
                name = key.removeprefix("test_").removeprefix("cv_out_of_fold_").removesuffix(": val_dedup")
                rows[name] = {"accuracy": acc, "delta_points": round(100 * (acc - ref), 2)}
        models[model] = {"source": repo_relative(str(path.resolve())), "split": split, "rows": rows, "export_command": report.get("export_command")}
    return {"reference": "onnx_fp32", "models": models} if models else None


def triton_bound(triton: dict | None, ceiling: dict | None) -> str | None:
    """Whether the Triton-level target is within reach: ONNX Runtime's own best rate on this machine, in-process."""
    s = (triton or {}).get("summary") or {}
    model = ((ceiling or {}).get("model") or {}).get("int8 (served)") or {}
    best = (model.get("sorted_batch32") or {}).get("sentences_per_s")
    if not s.get("serial_batch1_infer_per_s") or not best:
        return None
    need = TARGETS["triton_dynamic_vs_serial"] * s["serial_batch1_infer_per_s"]
    return (
        f"Bound on the Triton-level target: 2.5× the serial {s['serial_batch1_infer_per_s']}/s is {need:.0f}/s, while ONNX Runtime "
        f"in-process, with ideal length-sorted batches of 32 and no serving at all, runs the same model at {best}/s here "
        f"({best / s['serial_batch1_infer_per_s']:.2f}× serial): batch-1 serial already keeps both cores busy (2 intra-op threads), "
        f"so batching can only gain the CPU per inference it saves (server CPU ms per inference in the Triton table)."
        + (
            f" Against the shipped model's own concurrency-1 throughput (one request at a time on an instance of 1 ORT thread), the looser "
            f"reading of the target, the ratio is {s['dynamic_vs_shipped_c1']}×; the table above holds the stricter one."
            if "dynamic_vs_shipped_c1" in s
            else ""
        )
    )


def headline(triton: dict | None, gateway: dict | None, acc: dict | None) -> list[dict]:
    rows = []
    if gateway:
        by_c = gateway.get("summary", {}).get("by_concurrency", {})
        top = max(by_c, key=int) if by_c else None
        if top:
            r = by_c[top]
            rows.append(
                {
                    "target": f"gateway text throughput at concurrency {top} ≥ {TARGETS['gateway_throughput_ratio_c32']:g}× baseline",
                    "measured": f"{r['ours_rps']} vs {r['baseline_rps']} req/s = {r['throughput_ratio']}×",
                    "met": r["throughput_ratio"] is not None and r["throughput_ratio"] >= TARGETS["gateway_throughput_ratio_c32"],
                }
            )
            rows.append(
                {
                    "target": f"our p99 ≤ baseline p50 at concurrency {top}",
                    "measured": f"{r['ours_p99_ms']} ms vs {r['baseline_p50_ms']} ms",
                    "met": r["ours_p99_le_baseline_p50"],
                }
            )
        elif gateway.get("baseline", {}).get("skipped"):
            rows.append({"target": "gateway vs baseline", "measured": f"baseline skipped: {gateway['baseline']['skipped']}", "met": None})
    rows += gateway_speed_targets(gateway)
    if triton and (s := triton.get("summary")) and "dynamic_vs_serial" in s:
        rows.append(
            {
                "target": "Triton throughput with dynamic batching ≥ 2.5× batch-1 serial",
                "measured": f"{s['dynamic_best_infer_per_s']}/s (concurrency {s['dynamic_best_concurrency']}) vs "
                f"{s['serial_batch1_infer_per_s']}/s ({s.get('serial_batch1_variant', 'batching off')}, concurrency 1) "
                f"= {s['dynamic_vs_serial']}×",
                "met": s["dynamic_vs_serial"] >= TARGETS["triton_dynamic_vs_serial"],
            }
        )
    for model, m in (acc or {}).get("models", {}).items():
        for name, r in m["rows"].items():
            if name == "onnx_fp32":
                continue
            rows.append(
                {
                    "target": f"{model} {name} accuracy within 0.5 points of fp32",
                    "measured": f"{r['accuracy']:.4f} vs {m['rows']['onnx_fp32']['accuracy']:.4f} ({r['delta_points']:+.2f} pt)",
                    "met": abs(r["delta_points"]) <= TARGETS["accuracy_delta_points"],
                }
            )
    return rows


def gateway_speed_targets(gateway: dict | None) -> list[dict]:
    """Issue 20's targets: /text_emotion against the model's own in-process rate measured in the same run, its tail at 32,
    and its latency alone."""
    if not gateway:
        return []
    ours = {p["concurrency"]: p for p in gateway["service"]["points"] if p["target"].endswith("/text_emotion")}
    top = max(ours) if ours else None
    rows = []
    vs = (gateway.get("summary") or {}).get("vs_model_ceiling")
    if vs and top is not None and str(top) in vs["by_concurrency"]:
        ratio = vs["by_concurrency"][str(top)]
        rows.append(
            {
                "target": f"gateway text at concurrency {top} ≥ {TARGETS['gateway_vs_model_ceiling_c32']:.2f} of the model's in-process "
                "ceiling (same run)",
                "measured": f"{ours[top]['throughput_rps']} vs {vs['ceiling_sentences_per_s']} sentences/s = {ratio:.3f}",
                "met": ratio >= TARGETS["gateway_vs_model_ceiling_c32"],
            }
        )
    if top is not None and ours[top]["p99_ms"] is not None:
        rows.append(
            {
                "target": f"gateway text p99 at concurrency {top} ≤ {TARGETS['gateway_p99_ms_c32']:g} ms",
                "measured": f"{ours[top]['p99_ms']} ms (p50 {ours[top]['p50_ms']} ms, p99/p50 {ours[top]['p99_ms'] / ours[top]['p50_ms']:.2f})",
                "met": ours[top]["p99_ms"] <= TARGETS["gateway_p99_ms_c32"],
            }
        )
    if 1 in ours and ours[1]["p50_ms"] is not None:
        rows.append(
            {
                "target": f"gateway text p50 at concurrency 1 ≤ {TARGETS['gateway_p50_ms_c1']:g} ms",
                "measured": f"{ours[1]['p50_ms']} ms",
                "met": ours[1]["p50_ms"] <= TARGETS["gateway_p50_ms_c1"],
            }
        )
    speech = [p for p in gateway["service"]["points"] if p["target"].endswith("/speech_emotion") and "gateway" in (p.get("cpu_ms_per_request") or {})]
    if speech:
        worst = max(p["cpu_ms_per_request"]["gateway"] for p in speech)
        rows.append(
            {
                "target": f"gateway CPU per /speech_emotion request (RAVDESS clips, about 4 s) ≤ {TARGETS['gateway_speech_cpu_ms']:g} ms",
                "measured": ", ".join(f"{p['cpu_ms_per_request']['gateway']} ms at concurrency {p['concurrency']}" for p in speech),
                "met": worst <= TARGETS["gateway_speech_cpu_ms"],
            }
        )
    return rows


def gateway_ab_section(ab: dict | None) -> str:
    """The gateway's text settings measured interleaved (bench.gateway_ab): the coalescing switch and its calls in flight."""
    if not ab or not ab.get("rows"):
        return ""
    md = ["\n## Gateway text settings, interleaved (`python -m bench.gateway_ab`)\n\n", ab["method"] + ".\n\n"]
    md.append(
        _table(
            [
                "variant",
                "concurrency",
                "req/s (median)",
                "ratio to ref (median of rounds)",
                "per-round ratios",
                "p50 ms",
                "p99 ms",
                "gateway CPU ms/req",
                "tritonserver CPU ms/req",
            ],
            [
                [
                    f"{r['variant']}: {r['change']}",
                    r["concurrency"],
                    r["throughput_rps"],
                    r["median_ratio_to_ref"],
                    " ".join(f"{x:g}" for x in r["ratios_to_ref"]),
                    r["p50_ms"],
                    r["p99_ms"],
                    r["gateway_cpu_ms"],
                    r["tritonserver_cpu_ms"],
                ]
                for r in ab["rows"]
            ],
        )
    )
    return "".join(md)


def text_profile_section(gateway: dict | None) -> str:
    """Where a /text_emotion request's CPU milliseconds go (bench.text_profile), and the in-process ceiling beside it."""
    prof = ((gateway or {}).get("service") or {}).get("profile")
    vs = ((gateway or {}).get("summary") or {}).get("vs_model_ceiling")
    if not prof and not vs:
        return ""
    md = ["\n## /text_emotion: where each CPU millisecond goes, and the model's own rate beside it\n\n"]
    if vs:
        md.append(
            f"The model's ceiling, measured in the same run: the served INT8 graph in ONNX Runtime in process (2 threads, "
            f"length-sorted batches of 32, no HTTP, no Triton) ran {vs['before']['sentences_per_s']} sentences/s before the gateway "
            f"sweep ({vs['before']['at']} UTC) and {vs['after']['sentences_per_s']} after it ({vs['after']['at']} UTC); mean "
            f"{vs['ceiling_sentences_per_s']}. Gateway /text_emotion as a fraction of it, per concurrency: "
            + ", ".join(f"{c}: {r}" for c, r in vs["by_concurrency"].items())
            + ".\n\n"
        )
    if prof and prof.get("rows"):
        md.append(
            f"Sampled at concurrency {prof['concurrency']} for {prof['seconds']} s ({prof['requests']} requests, {prof['throughput_rps']} "
            f"req/s, p50 {prof['p50_ms']} ms, p99 {prof['p99_ms']} ms): `py-spy` samples the gateway and one python-backend stub, "
            f"`/proc` gives each process's CPU time over the window; a category's share of a process's samples times that process's "
            f"CPU ms per request is its cost (`bench/text_profile.py` names each sample by its innermost recognised frame). "
            f"Total {prof['total_cpu_ms_per_request']} CPU ms per request, of the 2 cores' 2000 ms per second."
            + (
                f" The gateway's text batcher made {prof['coalesced_calls']:g} calls, {prof['requests_per_call']} requests per call."
                if prof.get("requests_per_call")
                else ""
            )
            + "\n\n"
        )
        md.append(
            _table(
                ["process", "what", "share of the process's samples", "CPU ms per request"],
                [[r["process"], r["what"], r["share"], r["cpu_ms_per_request"]] for r in prof["rows"]],
            )
        )
    elif prof:
        md.append(f"Profile skipped: {prof.get('skipped')}\n")
    return "".join(md)


def _fmt(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def _table(headers: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def gateway_floor_section(floor: dict | None) -> str:
    """The gateway's own Python per /text_emotion request against FastAPI's floor (bench.gateway_floor)."""
    if not floor or not floor.get("rows"):
        return ""
    md = [
        "\n## The gateway's own Python per /text_emotion request (`python -m bench.gateway_floor`)\n\n",
        f"Each app called in process through ASGI, no sockets ({floor['requests_per_repetition']} real sentences per repetition, "
        f"median of the repetitions, {floor['started']} UTC); CPU ms per request.\n\n",
        _table(
            ["app", "CPU ms per request", "repetitions"],
            [[r["variant"], r["cpu_ms_per_request"], " ".join(map(str, r["repetitions"]))] for r in floor["rows"]],
        ),
    ]
    under_load = floor.get("under_load_gateway_cpu_ms_at_32")
    if under_load is not None:
        gateway = next((r["cpu_ms_per_request"] for r in floor["rows"] if r["variant"].startswith("the gateway")), None)
        md.append(
            f"\nUnder load at concurrency 32 (the sweep above) the gateway process spends {under_load} CPU ms per request; "
            f"{round(under_load - gateway, 2)} of it is HTTP over sockets, the event loop and the gRPC call to Triton.\n"
        )
    return "".join(md)


def markdown(data: dict) -> str:
    kind = (
        "quick mode: smoke numbers, not results"
        if data.get("quick")
        else "partial run: " + ", ".join(data["steps"])
        if data.get("steps")
        else "full run"
    )
    md = [f"# Emotune benchmark report\n\nGenerated {data['generated']} by `{data['command']}` ({kind}).\n"]
    m = data.get("machine") or {}
    if m:
        md.append(f"Machine: {m.get('cpu', '?')}, {m.get('cpus')} cores, {m.get('platform')}. Load average at start {m.get('loadavg_1m')}.\n")
        busy = m.get("other_busy_processes") or []
        md.append("Other busy processes at start: " + ("; ".join(f"`{b}`" for b in busy) if busy else "none") + ".\n")
    if data.get("notes"):
        md += [f"- {n}\n" for n in data["notes"]]
    md.append("\n## Targets\n\n")
    md.append(
        _table(
            ["target", "measured", "met"],
            [[r["target"], r["measured"], {True: "yes", False: "**no**", None: "–"}[r["met"]]] for r in data["headline"]],
        )
    )
    if data.get("triton_bound"):
        md.append("\n" + data["triton_bound"] + "\n")
    gw = data.get("gateway")
    if gw:
        md.append("\n## Gateway vs the original design's server (same sentences, same concurrency, same run)\n\n")
        client = next((p.get("client") for p in gw["service"]["points"]), "raw")
        md.append(
            f"Closed-loop asyncio load ({'a minimal keep-alive HTTP/1.1 client' if client == 'raw' else 'httpx'}, one connection per "
            f"worker), {gw['settings']['warmup_s']} s warm-up then {gw['settings']['duration_s']} s per point; "
            f"`POST /text_emotion?recommend=false` on ours (the original endpoint returned the emotion only). "
            f"Baseline: {gw['baseline'].get('model') or gw['baseline'].get('skipped')}, Flask threaded server, torch threads "
            f"{gw['baseline'].get('torch_threads')}.\n\n"
        )
        rows = [
            [c, r["ours_rps"], r["baseline_rps"], f"{r['throughput_ratio']}×", r["ours_p99_ms"], r["baseline_p50_ms"]]
            for c, r in gw["summary"]["by_concurrency"].items()
        ]
        md.append(_table(["concurrency", "ours req/s", "baseline req/s", "ratio", "ours p99 ms", "baseline p50 ms"], rows))
        md.append("\nEvery point:\n\n")
        points = gw["service"]["points"] + gw["baseline"].get("points", [])
        md.append(
            _table(
                ["target", "concurrency", "req/s", "p50 ms", "p95 ms", "p99 ms", "errors", "CPU ms per request"],
                [
                    [
                        p["target"],
                        p["concurrency"],
                        p["throughput_rps"],
                        p["p50_ms"],
                        p["p95_ms"],
                        p["p99_ms"],
                        p["errors"],
                        ", ".join(f"{k} {v}" for k, v in (p.get("cpu_ms_per_request") or {}).items()),
                    ]
                    for p in points
                ],
            )
        )
        md.append(
            "\nCPU ms per request: user + system CPU time of each process tree (tritonserver includes its python-backend "
            "stubs) over the point, divided by the requests answered; the machine has 2000 CPU ms per second.\n"
        )
        for route, note in gw["service"].get("notes", {}).items():
            md.append(f"\n{route}: {note}\n")
    md.append(text_profile_section(gw))
    md.append(gateway_floor_section(data.get("gateway_floor")))
    md.append(gateway_ab_section(data.get("gateway_ab")))
    tr = data.get("triton")
    if tr:
        md.append("\n## Triton (perf_analyzer over gRPC, real token inputs)\n\n")
        md.append(
            f"`{tr['perf_analyzer']}`; {tr['inputs']['requests']} test sentences, one per request, padded as the gateway "
            f"pads them (to a multiple of {tr['inputs']['pad_to_multiple']}: widths {tr['inputs']['padded_widths']}).\n\n"
        )
        md.append(_table(["variant", "what"], [[k, v["description"]] for k, v in tr["variants"].items()]))
        md.append("\n")
        md.append(
            _table(
                [
                    "variant",
                    "concurrency",
                    "infer/s",
                    "p50 ms",
                    "p95 ms",
                    "p99 ms",
                    "queue ms",
                    "compute ms",
                    "server CPU ms/infer",
                    "avg batch",
                    "executed batch sizes (count)",
                ],
                [
                    [
                        p["model"],
                        p["concurrency"],
                        p.get("throughput_infer_per_s"),
                        p.get("p50_ms"),
                        p.get("p95_ms"),
                        p.get("p99_ms"),
                        p.get("server_queue_ms"),
                        p.get("server_compute_ms"),
                        p.get("server_cpu_ms_per_infer"),
                        p.get("avg_executed_batch"),
                        " ".join(f"{b}:{n}" for b, n in (p.get("executed_batch_sizes") or {}).items()) or p.get("error", "")[:80],
                    ]
                    for p in tr["points"]
                ],
            )
        )
        if tr.get("summary"):
            md.append("\nRatios: " + ", ".join(f"{k} = {v}" for k, v in tr["summary"].items()) + "\n")
    ce = data.get("ceiling")
    if ce:
        mm = ce["matmul"]
        md.append("\n## Ceiling: this machine's matrix multiply, and the text model's share of it\n\n")
        md.append(
            f"ONNX Runtime, {mm['threads']} threads, {mm['n']}×{mm['n']}×{mm['n']}: fp32 `MatMul` {mm.get('fp32_gops')} GFLOP/s, "
            f"int8 `MatMulInteger` {mm.get('int8_gops')} GOP/s. Model cost: {ce['flops_per_request_gateway_padding'] / 1e9:.3f} GFLOP per "
            f"request at the gateway's padding (encoder {ce['encoder_shape']}).\n\n"
        )
        rows = []
        for name, modes in ce["model"].items():
            for mode, r in modes.items():
                rows.append([f"{name}, ONNX Runtime direct, {mode}", r["sentences_per_s"], r["achieved_gops"], r["fraction_of_ceiling"]])
        for label, rate in data.get("serving_rates", {}).items():
            rows.append([label, rate["per_s"], rate["achieved_gops"], rate["fraction_of_ceiling"]])
        md.append(_table(["what", "sentences/s", "achieved GOP/s", "fraction of ceiling"], rows))
    tu = data.get("tuning")
    if tu:
        md.append("\n## Optimization: what each change gained\n\n")
        md.append(tu.get("method", "") + "\n\n")
        md.append(
            _table(
                ["change", "level", "concurrency", "throughput /s", "vs reference", "p50 ms", "p99 ms", "avg batch", "CPU ms per request"],
                [
                    [
                        r["change"],
                        r["level"],
                        r["concurrency"],
                        r["throughput"],
                        r.get("gain"),
                        r.get("p50_ms"),
                        r.get("p99_ms"),
                        r.get("avg_executed_batch"),
                        r.get("cpu_ms"),
                    ]
                    for r in tu["rows"]
                ],
            )
        )
        for note in tu.get("conclusions", []):
            md.append(f"- {note}\n")
    md.append(face_detection_section(data.get("face_detection")))
    md.append(soak_section(data.get("soak")))
    acc = data.get("accuracy")
    if acc and acc.get("models"):
        md.append("\n## Accuracy of the optimized variants (from each model's export report)\n\n")
        md.append(
            _table(
                ["model", "split", "variant", "accuracy", "Δ vs onnx_fp32 (points)"],
                [[model, m["split"], k, r["accuracy"], r["delta_points"]] for model, m in acc["models"].items() for k, r in m["rows"].items()],
            )
        )
        md.append("\nSources: " + ", ".join(f"`{m['source']}`" for m in acc["models"].values()) + "\n")
    md.append("\n## Reproduce\n\n```bash\n" + "\n".join(data["commands"]) + "\n```\n")
    return "".join(md)


def real_photos_table(real: dict | None) -> str:
    """The detectors on the labelled real photos (bench/data/real_photos), and where the photos come from."""
    if not real:
        return ""
    md = [
        f"\nReal photos: {real['photos']} photos of one to six people shipped in registry packages, {real['faces']} labelled faces "
        f"of at least 40 px ({real['ignored']} smaller or depicted faces ignored); a face is found when the detector's own box "
        "overlaps its labelled face box with IoU > 0.3.\n\n"
    ]
    rows = []
    for name, r in real["rows"].items():
        if "recall" not in r:
            rows.append([name, r.get("skipped", ""), "", "", "", ""])
            continue
        rows.append(
            [
                name,
                f"{r['recall']} ({r['found']}/{r['faces']})",
                f"{r['precision']} ({r['false_positives']} false)",
                r["false_positives_per_image"],
                r["cpu_ms_per_image"],
                f"{r['small_found']}/{r['small_faces']}",
            ]
        )
    small = f"faces under {real['small_face_px']} px found"
    headers = ["detector", "recall", "precision", "false positives / image", "CPU ms / image (1 thread)", small]
    md.append(_table(headers, rows))
    sources = "; ".join(
        f"{s['package']} {s['version']} ({s['registry']}, {s['license']}): {s['photos']} photos, {s['faces']} faces" for s in real["sources"]
    )
    md.append(f"\nSources (bench/data/real_photos/labels.json has each photo's path in its package): {sources}.\n")
    return "".join(md)


def face_detection_section(fd: dict | None) -> str:
    """Haar (the gateway's detector before) and the served BlazeFace pipeline on the same scenes, tight crops, and the
    whole pipeline's accuracy on FER2013 val-dedup, against the targets."""
    if not fd or not isinstance(fd.get("rows"), dict):
        return ""
    md = [
        "\n## Face detection: Haar (before) vs BlazeFace in face_pipeline (served)\n\n",
        fd["method"] + "\n\n",
        f"{fd['scenes']} scenes, {fd['faces']} faces; tight crops: FER2013 val files as uploaded with detect=true.\n\n",
    ]
    rows = []
    for name, r in fd["rows"].items():
        tight = r.get("tight_crops") or {}
        rows.append(
            [
                name,
                f"{r['recall']} ({r['found']}/{r['faces']})",
                r["false_positives_per_image"],
                r["cpu_ms_per_image"],
                f"{tight['share']} ({tight['with_a_face']}/{tight['files']})" if tight else "–",
            ]
        )
    md.append(_table(["detector", "recall", "false positives / image", "CPU ms / image (1 thread)", "tight crops with a face"], rows))
    md.append(recall_by_condition_table(fd["rows"]))
    acc = fd.get("pipeline_accuracy_fer2013_val_dedup")
    if acc:
        md.append(
            f"\nAccuracy on FER2013 val-dedup ({acc['images']} files) through the served models: detect=false "
            f"{acc['detect_false_accuracy']}, detect=true (detection → crop → face_emotion; {acc['detect_true_no_face']} files with no "
            f"face found count as wrong) {acc['detect_true_accuracy']}.\n"
        )
    md.append(real_photos_table(fd.get("real_photos")))
    if fd.get("served_config"):
        keys = ("range", "grids", "tile_overlap", "pad", "score_threshold", "tile_score_threshold", "nms_iou", "face_margin")
        md.append("\nServed face_pipeline settings: " + ", ".join(f"{k} {fd['served_config'][k]}" for k in keys if k in fd["served_config"]) + ".\n")
    for note in fd.get("notes", []):
        md.append(f"- {note}\n")
    return "".join(md)


def recall_by_condition_table(rows: dict) -> str:
    """Each detector's recall on the scene faces of one condition (occluded, blurred, small...), faces counted once per row."""
    with_conditions = {name: r["recall_by_condition"] for name, r in rows.items() if r.get("recall_by_condition")}
    if not with_conditions:
        return ""
    names = list(with_conditions)
    conditions = list(next(iter(with_conditions.values())))
    body = [[c, with_conditions[names[0]][c]["faces"], *(with_conditions[n][c]["recall"] for n in names)] for c in conditions]
    return "\nRecall by condition on the same scenes:\n\n" + _table(["scene faces", "faces", *(n.split(" (")[0] for n in names)], body)


def soak_section(soak: dict | None) -> str:
    """The soak's verdict: errors under sustained mixed load, and whether each process tree's memory stayed flat."""
    if not soak:
        return ""
    load, met = soak["load"], soak["met"]
    md = [
        f"\n## Soak: {soak['duration_s'] / 60:.0f} min of mixed load at {soak['fraction_of_peak']:.0%} of peak\n\n",
        f"Peak (closed loop, concurrency 16, mixed): {soak['peak']['throughput_rps']} req/s; held {load['achieved_rps']} req/s "
        f"({', '.join(f'{k} {v}' for k, v in load['by_route'].items())} requests). Errors: **{load['errors']}** "
        f"{load['error_kinds'] or ''}; p50 {load['p50_ms']} ms, p99 {load['p99_ms']} ms.\n\n",
    ]
    md.append(
        _table(
            ["process tree", "RSS first MB", "RSS last MB", "RSS max MB", "slope MB/min (after the first fifth)"],
            [[n, m["first"], m["last"], m["max"], m["slope_mb_per_min"]] for n, m in soak["memory_mb"].items()],
        )
    )
    md.append(
        f"\nTargets: 0 errors — {'met' if met['no_errors'] else 'MISSED'}; memory flat (slope < {soak['max_slope_mb_per_min']} MB/min) — "
        f"{'met' if met['memory_flat'] else 'MISSED'}. `python -m bench.soak` (`--minutes`, `--fraction`).\n"
    )
    return "".join(md)


def chart(data: dict, path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
    gw, tr = data.get("gateway"), data.get("triton")
    if gw:
        series = {}
        for p in gw["service"]["points"] + gw["baseline"].get("points", []):
            series.setdefault(p["target"], []).append(p)
        for name, pts in series.items():
            cs = [p["concurrency"] for p in pts]
            axes[0].plot(cs, [p["throughput_rps"] for p in pts], marker="o", label=name)
            if name.endswith("/text_emotion"):
                axes[1].plot(cs, [p["p99_ms"] for p in pts], marker="o", label=f"{name} p99")
                axes[1].plot(cs, [p["p50_ms"] for p in pts], marker=".", linestyle="--", label=f"{name} p50")
        axes[0].set(title="Gateway vs baseline: throughput", xlabel="concurrency", ylabel="requests/s", xscale="log", xticks=[1, 2, 4, 8, 16, 32])
        axes[1].set(title="Gateway vs baseline: latency", xlabel="concurrency", ylabel="ms", xscale="log", yscale="log", xticks=[1, 2, 4, 8, 16, 32])
        for ax in axes[:2]:
            ax.set_xticklabels([1, 2, 4, 8, 16, 32])
            ax.legend(fontsize=7)
            ax.grid(alpha=0.3)
    if tr:
        series = {}
        for p in tr["points"]:
            if "error" not in p:
                series.setdefault(p["model"], []).append(p)
        for name, pts in series.items():
            axes[2].plot([p["concurrency"] for p in pts], [p["throughput_infer_per_s"] for p in pts], marker="o", label=name)
        axes[2].set(title="Triton (perf_analyzer, gRPC)", xlabel="concurrency", ylabel="inferences/s", xscale="log", xticks=[1, 2, 4, 8, 16, 32])
        axes[2].set_xticklabels([1, 2, 4, 8, 16, 32])
        axes[2].legend(fontsize=7)
        axes[2].grid(alpha=0.3)
    fig.suptitle(f"Emotune benchmarks ({data['generated']}{', quick mode' if data.get('quick') else ''})")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def serving_rates(ceiling: dict | None, triton: dict | None, gateway: dict | None) -> dict:
    """Achieved GOP/s of the served INT8 model at the best Triton point and at the gateway's highest concurrency."""
    if not ceiling or not isinstance(ceiling["matmul"].get("int8_gops"), (int, float)):
        return {}
    flops, peak = ceiling["flops_per_request_gateway_padding"], ceiling["matmul"]["int8_gops"]
    out = {}
    candidates = []
    if triton:
        pts = [p for p in triton["points"] if p.get("model") == TEXT_MODEL and "error" not in p]
        if pts:
            best = max(pts, key=lambda p: p["throughput_infer_per_s"])
            candidates.append((f"served INT8 through Triton, best point (concurrency {best['concurrency']})", best["throughput_infer_per_s"]))
    if gateway:
        pts = [p for p in gateway["service"]["points"] if p["target"].endswith("/text_emotion")]
        if pts:
            top = max(pts, key=lambda p: p["concurrency"])
            candidates.append((f"served INT8 through the gateway (concurrency {top['concurrency']})", top["throughput_rps"]))
    for label, per_s in candidates:
        gops = per_s * flops / 1e9
        out[label] = {"per_s": per_s, "achieved_gops": round(gops, 1), "fraction_of_ceiling": round(gops / peak, 3)}
    return out


def previous_notes(out: Path) -> list[str]:
    previous = _load(out / "report.json")
    return list(previous.get("notes", [])) if previous else []


def build(out: Path, command: str, quick: bool = False, notes: list[str] | None = None, steps: list[str] | None = None) -> dict:
    """``steps``: the steps this run measured, when not all of them (the report then says it is partial)."""
    names = ("triton", "gateway", "ceiling", "tuning", "face_detection")
    triton, gateway, ceiling, tuning, face_detection = (_load(out / f"{n}.json") for n in names)
    acc = accuracy()
    machine = (gateway or triton or ceiling or {}).get("machine")
    data = {
        "generated": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": command,
        "quick": quick,
        "steps": steps,
        "machine": machine,
        "notes": notes or [],
        "headline": headline(triton, gateway, acc),
        "accuracy": acc,
        "gateway": gateway,
        "triton": triton,
        "ceiling": ceiling,
        "tuning": tuning,
        "face_detection": face_detection,
        "serving_rates": serving_rates(ceiling, triton, gateway),
        "soak": _load(out / "soak.json"),
        "gateway_ab": _load(out / "gateway_ab.json"),
        "gateway_floor": _load(out / "gateway_floor.json"),
        "triton_bound": triton_bound(triton, ceiling),
        "commands": [
            "pip install -e '.[train,bench]'   # torch + transformers for the baseline, flask, matplotlib",
            "emotune bench                     # everything below, then the report (about 30 minutes on 2 cores)",
            "python -m bench.ceiling           # matmul ceiling + model FLOP/s",
            "python -m bench.triton_perf       # perf_analyzer sweeps: INT8/fp32 × dynamic batching on/off",
            "python -m bench.gateway_load      # gateway sweep, then the Flask baseline with the same load",
            "python -m bench.tuning            # one change at a time, measured against the shipped configuration",
            "python -m bench.face_detection    # Haar vs the served BlazeFace pipeline: recall, false positives, CPU, tight crops, accuracy",
            "python -m bench.report            # bench/report/{report.json,REPORT.md,report.png}",
            "emotune bench --quick --out /tmp/bench   # the smoke version the tests run",
        ],
    }
    write_json(out / "report.json", data)
    (out / "REPORT.md").write_text(repo_relative(markdown(data)))
    chart(data, out / "report.png")
    return data


def main(argv: list[str] | None = None) -> None:
    args = step_parser(__doc__).parse_args(argv)
    previous = _load(args.out / "report.json") or {}  # a rebuild measures nothing: the notes and the partial marker stay
    data = build(args.out, "python -m bench.report", args.quick, list(previous.get("notes", [])), steps=previous.get("steps"))
    for row in data["headline"]:
        print(f"{'MET ' if row['met'] else 'MISS' if row['met'] is False else '  - '} {row['target']}: {row['measured']}")


if __name__ == "__main__":
    main()
