"""Speech model export: checkpoint → ONNX (dynamic batch and frame axes, parity-checked) → repository + report.

The model is small (≈0.3 M parameters, ~1 MB), so both flavours serve the FP32 graph: the python flavour runs it
in ONNX Runtime on CPU; the onnxruntime flavour lets TensorRT build FP16 engines on GPU hosts. The normalization
statistics travel beside it as ``feature_stats.json`` and the feature settings inside ``model.json``.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import numpy as np
import torch

from export.onnx import export_onnx, run, session
from export.parity import check_parity
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

    def forward(self, features):
        return torch.softmax(self.model(features), dim=-1)


def load_run(run_dir: Path) -> tuple[torch.nn.Module, dict, SpeechFeatureConfig, FeatureStats]:
    meta = json.loads((run_dir / "train_config.json").read_text())
    config = SpeechFeatureConfig.from_dict(meta["features"])
    model = build_model(meta["variant"], config.dim, len(meta["labels"]))
    model.load_state_dict(torch.load(run_dir / "model.pt", map_location="cpu", weights_only=True))
    model.eval()
    return model, meta, config, FeatureStats.from_json(run_dir / "feature_stats.json")


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
    windows, window_labels, owner = window_set([stats.normalize(f) for f in raw], y_test, config)

    work = run_dir / "onnx"
    example = {"features": torch.from_numpy(windows[:2])}
    onnx_path = export_onnx(served, example, ["probabilities"], {"features": {0: "batch", 1: "frames"}, "probabilities": {0: "batch"}},
                            work / "model.onnx")
    # Parity on real held-out windows, in batches of several sizes, and on a longer and a shorter time axis.
    batches = [{"features": windows[i : i + n]} for i, n in ((0, 1), (1, 8), (9, 32))]
    batches.append({"features": np.concatenate([windows[:4], windows[4:8]], axis=1)})
    batches.append({"features": windows[:4, :120]})
    parity = check_parity(served, onnx_path, batches, atol=1e-4)

    sess = session(onnx_path)
    window_probs = np.concatenate([run(sess, {"features": windows[i : i + 64]}) for i in range(0, len(windows), 64)])
    probs = clip_probabilities(window_probs, owner, len(test))
    onnx_metrics = classification_metrics(y_test, probs.argmax(1), labels)

    width = config.window_frames
    spec = ModelSpec(
        name=MODEL_NAME,
        labels=labels,
        inputs=[TensorSpec("features", "float32", [-1, config.dim])],
        outputs=[TensorSpec("probabilities", "float32", [len(labels)])],
        max_batch_size=64,  # a 60 s clip is 40 windows of 3 s every 1.5 s: one request
        preferred_batch_sizes=[8, 16, 32, 64],
        warmup_dims={"features": [width, config.dim]},
        trt_max_dims={"features": [4 * width, config.dim]},
        preprocessing={"features": config.to_dict(), "feature_stats": "feature_stats.json",
                       "window_seconds": config.window_seconds,
                       "window_hop_seconds": config.window_hop_frames * config.hop_length / config.sample_rate},
    )
    write_model(repository, spec, {"python": onnx_path, "onnxruntime": onnx_path}, files={"feature_stats.json": run_dir / "feature_stats.json"})

    train_report = json.loads((run_dir / "report.json").read_text())
    report = {
        **{k: v for k, v in train_report.items() if k not in ("test_pytorch_fp32", "command")},
        "train_command": train_report.get("command"),
        "export_command": shlex.join(["emotune", *sys.argv[1:]]),
        "parity_max_abs_diff_fp32": float(f"{parity:.3g}"),
        "onnx_size_mb": round(onnx_path.stat().st_size / 2**20, 2),
        "test_pytorch_fp32": train_report["test_pytorch_fp32"],
        "test_onnx_fp32 (served)": onnx_metrics,
    }
    reports = repository / "reports" / MODEL_NAME
    write_report(reports, "speech_emotion on held-out actors (served: FP32 ONNX)", report, labels, "test_onnx_fp32 (served)")
    print(f"parity {parity:.2e}; held-out actors: ONNX accuracy {onnx_metrics['accuracy']:.4f}, macro-F1 "
          f"{onnx_metrics['macro_f1']:.4f}; repository written to {repository}")
    return report
