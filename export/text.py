"""Text model export: checkpoint → ONNX (parity-checked) → optimized → INT8 (CPU) / FP16 (GPU) → repository."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import numpy as np
import torch

from export.onnx import export_onnx, run, session
from export.parity import check_parity
from export.quantize import optimize_transformer, quantize_int8, to_fp16
from export.repository import ModelSpec, write_model
from gateway.model_info import TensorSpec
from gateway.preprocessing.text import TextTokenizer
from training.data import read_text_split
from training.report import classification_metrics, write_report
from training.text import TextEmotionModel, encoder_dir

MODEL_NAME = "text_emotion"
PAD_TO_MULTIPLE = 16  # requests fall into a few shape classes, so Triton's dynamic batcher can group them


class _Probabilities(torch.nn.Module):
    """The served graph ends in softmax: clients get probabilities."""

    def __init__(self, model: TextEmotionModel):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return torch.softmax(self.model(input_ids, attention_mask), dim=-1)


def _evaluate(onnx_path: Path, tokenizer: TextTokenizer, texts: list[str], labels: np.ndarray, names: list[str]) -> dict:
    sess = session(onnx_path)
    order = np.argsort([len(t) for t in texts])
    probs = np.zeros((len(texts), len(names)), dtype=np.float32)
    for start in range(0, len(order), 32):
        idx = order[start : start + 32]
        probs[idx] = run(sess, tokenizer.encode([texts[i] for i in idx]))
    return classification_metrics(labels, probs.argmax(1), names)


def text_model_spec(labels: list[str], max_length: int) -> ModelSpec:
    """How ``text_emotion`` is served. On CPU: two instances of one ONNX Runtime thread each and ragged batching,
    which measured fastest here (bench/report: tuning)."""
    return ModelSpec(
        name=MODEL_NAME,
        labels=labels,
        inputs=[TensorSpec("input_ids", "int64", [-1]), TensorSpec("attention_mask", "int64", [-1])],
        outputs=[TensorSpec("probabilities", "float32", [len(labels)])],
        cpu_instances=2,
        intra_op_threads=1,
        ragged_batching=True,
        warmup_dims={"input_ids": [32], "attention_mask": [32]},
        trt_max_dims={"input_ids": [max_length], "attention_mask": [max_length]},
        preprocessing={"tokenizer": "tokenizer.json", "max_length": max_length, "pad_to_multiple": PAD_TO_MULTIPLE},
    )


def export(run_dir: Path, repository: Path, args=None) -> dict:
    meta = json.loads((run_dir / "train_config.json").read_text())
    labels, max_length = meta["labels"], meta["max_length"]
    model = TextEmotionModel(len(labels), encoder=encoder_dir())
    model.load_state_dict(torch.load(run_dir / "model.pt", map_location="cpu", weights_only=True))
    model.eval()
    served = _Probabilities(model).eval()
    tokenizer = TextTokenizer(encoder_dir() / "tokenizer.json", max_length)
    test = read_text_split(Path(getattr(args, "data_dir", None) or "../shared/data/text") / "test.csv", labels, meta["fold_love"])
    limit = getattr(args, "test_limit", None)
    if limit:
        test.texts, test.labels = test.texts[:limit], test.labels[:limit]

    work = run_dir / "onnx"
    example = {k: torch.from_numpy(v) for k, v in tokenizer.encode(["export example", "a second example text"]).items()}
    fp32 = export_onnx(served, example, ["probabilities"], {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"},
                                           "probabilities": {0: "batch"}}, work / "model_fp32.onnx")
    parity_batches = [tokenizer.encode(test.texts[i : i + 8]) for i in range(0, min(len(test.texts), 64), 8)]
    parity = check_parity(served, fp32, parity_batches, atol=1e-4)
    cfg = model.encoder.config
    optimized = optimize_transformer(fp32, work / "model_optimized.onnx", cfg.num_attention_heads, cfg.hidden_size)
    optimized_cpu = optimize_transformer(fp32, work / "model_optimized_cpu.onnx", cfg.num_attention_heads, cfg.hidden_size, skip_layer_norm=False)
    int8 = quantize_int8(optimized_cpu, work / "model_int8.onnx")
    fp16 = to_fp16(optimized, work / "model_fp16.onnx")

    variants = {"onnx_fp32": fp32, "onnx_optimized_fp32": optimized_cpu, "onnx_int8 (served on CPU)": int8}
    accuracy = {name: _evaluate(path, tokenizer, test.texts, test.labels, labels) for name, path in variants.items()}

    spec = text_model_spec(labels, max_length)
    write_model(repository, spec, {"python": int8, "onnxruntime": fp16}, files={"tokenizer.json": encoder_dir() / "tokenizer.json"})

    train_report = json.loads((run_dir / "report.json").read_text())
    report = {
        **{k: v for k, v in train_report.items() if k not in ("test_pytorch_fp32",)},
        "train_command": train_report.get("command"),
        "export_command": shlex.join(["emotune", *sys.argv[1:]]),
        "parity_max_abs_diff_fp32": float(f"{parity:.3g}"),
        "files": {"python flavour (CPU)": "model_int8.onnx", "onnxruntime flavour (GPU, TensorRT FP16)": "model_fp16.onnx"},
        "sizes_mb": {p.name: round(p.stat().st_size / 2**20, 1) for p in (fp32, optimized, optimized_cpu, int8, fp16)},
        "test_pytorch_fp32": train_report["test_pytorch_fp32"],
        **{f"test_{name}": metrics for name, metrics in accuracy.items()},
    }
    report.pop("command", None)
    reports = repository / "reports" / MODEL_NAME
    write_report(reports, "text_emotion (served: INT8 ONNX)", report, labels, "test_onnx_int8 (served on CPU)")
    served_acc = accuracy["onnx_int8 (served on CPU)"]["accuracy"]
    print(f"parity {parity:.2e}; test accuracy: " + ", ".join(f"{k} {v['accuracy']:.4f}" for k, v in accuracy.items()))
    print(f"served INT8 accuracy {served_acc:.4f}; repository written to {repository}")
    return report
