"""The machine's ceiling: matrix-multiply throughput (fp32 ``MatMul`` and int8 ``MatMulInteger`` in ONNX Runtime, the
kernels the served graphs use), and the text model's achieved FLOP/s as a fraction of it.

Model FLOPs are counted from the encoder's shape (layers, hidden, intermediate) at the padded width actually run:
per token and layer 2·(4·H² + 2·H·I) for the projections and feed-forward, plus 4·s·H for attention's two
products, plus the head. The INT8 model does the same count of multiply-adds in int8, so its achieved rate is
compared with the int8 ceiling, the fp32 model's with the fp32 one.

    python -m bench.ceiling [--quick] [--out bench/report]
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from bench.common import REPOSITORY, TEXT_MODEL, TEXT_RUN, machine, real_texts, step_parser, write_json
from gateway.inference.onnx_session import cpu_session

MINILM = {"num_hidden_layers": 6, "hidden_size": 384, "intermediate_size": 1536}
HEAD_HIDDEN = 256


def _matmul_graph(n: int, integer: bool) -> bytes:
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    if integer:
        b = numpy_helper.from_array(rng.integers(-127, 127, (n, n), dtype=np.int8), "B")
        node = helper.make_node("MatMulInteger", ["A", "B"], ["Y"])
        a_type, y_type = TensorProto.UINT8, TensorProto.INT32
    else:
        b = numpy_helper.from_array(rng.standard_normal((n, n), dtype=np.float32), "B")
        node = helper.make_node("MatMul", ["A", "B"], ["Y"])
        a_type, y_type = TensorProto.FLOAT, TensorProto.FLOAT
    graph = helper.make_graph(
        [node], "mm", [helper.make_tensor_value_info("A", a_type, [n, n])], [helper.make_tensor_value_info("Y", y_type, [n, n])], initializer=[b]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def _timed(fn, min_time: float, min_reps: int = 3) -> float:
    """Best seconds per call over repeated runs (best, not mean: the machine is shared and noisy)."""
    fn()
    best, reps, start = float("inf"), 0, time.perf_counter()
    while reps < min_reps or time.perf_counter() - start < min_time:
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
        reps += 1
    return best


def matmul_ceiling(n: int, threads: int, min_time: float) -> dict:
    """GFLOP/s (fp32) and GOP/s (int8) of an n×n×n matrix multiply in ONNX Runtime."""
    out = {"n": n, "threads": threads}
    rng = np.random.default_rng(1)
    for kind, integer in (("fp32", False), ("int8", True)):
        try:
            sess = cpu_session(_matmul_graph(n, integer), threads)
        except ImportError as exc:  # the onnx package builds the graph ([train] or [bench] extra)
            out[kind] = f"unavailable: {exc}"
            continue
        a = rng.integers(0, 255, (n, n), dtype=np.uint8) if integer else rng.standard_normal((n, n), dtype=np.float32)
        seconds = _timed(lambda sess=sess, a=a: sess.run(None, {"A": a}), min_time)
        out[f"{kind}_gops"] = round(2 * n**3 / seconds / 1e9, 1)
    return out


def encoder_shape() -> dict:
    try:
        from training.text import encoder_dir

        cfg = json.loads((encoder_dir() / "config.json").read_text())
        return {k: int(cfg[k]) for k in MINILM}
    except Exception:  # noqa: BLE001  (no [train] extra: the shipped encoder's known shape)
        return dict(MINILM)


def model_flops(width: int, shape: dict, n_labels: int = 5) -> float:
    """FLOPs of one sentence padded to ``width`` tokens (2 per multiply-add)."""
    h, i, layers = shape["hidden_size"], shape["intermediate_size"], shape["num_hidden_layers"]
    per_layer = width * 2 * (4 * h * h + 2 * h * i) + 4 * width * width * h
    return layers * per_layer + 2 * (h * HEAD_HIDDEN + HEAD_HIDDEN * n_labels)


def _tokenizer():
    from gateway.model_info import ModelInfo
    from gateway.preprocessing.text import TextTokenizer

    info = ModelInfo.load(REPOSITORY / TEXT_MODEL)
    pre = info.preprocessing
    return TextTokenizer(info.directory / pre["tokenizer"], pre["max_length"], pre.get("pad_to_multiple", 1)), pre


def gateway_widths(texts: list[str]) -> list[int]:
    """Padded width of each text as the gateway sends it (one text per request)."""
    tok, _ = _tokenizer()
    return [tok.encode([t])["input_ids"].shape[1] for t in texts]


def model_rate(onnx_path: Path, texts: list[str], threads: int, shape: dict, min_time: float) -> dict:
    """Sentences/s and achieved GOP/s of one ONNX model in ONNX Runtime directly: batch 1, and length-sorted batches of 32."""
    tok, pre = _tokenizer()
    from gateway.preprocessing.text import TextTokenizer

    exact = TextTokenizer(REPOSITORY / TEXT_MODEL / pre["tokenizer"], pre["max_length"], 1)  # batches padded to their longest only
    sess = cpu_session(onnx_path, threads)
    out = {}
    singles = [tok.encode([t]) for t in texts]
    order = sorted(texts, key=lambda t: len(exact.encode([t])["input_ids"][0]))
    batches = [exact.encode(order[i : i + 32]) for i in range(0, len(order), 32)]
    for name, feeds in (("batch1", singles), ("sorted_batch32", batches)):

        def once(feeds=feeds):
            for f in feeds:
                sess.run(None, f)

        seconds = _timed(once, min_time, min_reps=2)
        flops = sum(model_flops(f["input_ids"].shape[1], shape) * f["input_ids"].shape[0] for f in feeds)
        out[name] = {"sentences_per_s": round(len(texts) / seconds, 1), "achieved_gops": round(flops / seconds / 1e9, 1)}
    return out


def run(quick: bool, out: Path) -> dict:
    threads = 2
    n, min_time, n_texts = (256, 0.3, 32) if quick else (1024, 3.0, 256)
    shape = encoder_shape()
    result = {"matmul": matmul_ceiling(n, threads, min_time), "encoder_shape": shape, "machine": machine()}
    texts = real_texts(n_texts)
    widths = gateway_widths(real_texts(1000 if not quick else 64))
    result["flops_per_request_gateway_padding"] = round(float(np.mean([model_flops(w, shape) for w in widths])))
    models = {"int8 (served)": REPOSITORY / TEXT_MODEL / "1" / "model.onnx"}
    fp32 = TEXT_RUN / "onnx" / "model_optimized_cpu.onnx"
    if fp32.exists() and not quick:
        models["fp32 optimized"] = fp32
    result["model"] = {}
    for name, path in models.items():
        rate = model_rate(path, texts, threads, shape, min_time)
        ceiling = result["matmul"].get("int8_gops" if name.startswith("int8") else "fp32_gops")
        for r in rate.values():
            r["fraction_of_ceiling"] = round(r["achieved_gops"] / ceiling, 3) if isinstance(ceiling, (int, float)) else None
        result["model"][name] = rate
        print(f"[ceiling] {name}: {rate}", flush=True)
    print(f"[ceiling] matmul {result['matmul']}", flush=True)
    write_json(out / "ceiling.json", result)
    return result


def main(argv: list[str] | None = None) -> None:
    p = step_parser(__doc__)
    args = p.parse_args(argv)
    print(json.dumps(run(args.quick, args.out), indent=2))


if __name__ == "__main__":
    main()
