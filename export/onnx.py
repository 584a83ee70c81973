"""PyTorch → ONNX with dynamic axes, and ONNX Runtime sessions for checking the result."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from gateway.inference.onnx_session import cpu_session


def export_onnx(
    module: torch.nn.Module,
    example: dict[str, torch.Tensor],
    output_names: list[str],
    dynamic_axes: dict[str, dict[int, str]],
    path: Path,
    opset: int = 17,
) -> Path:
    """TorchScript-based export (``dynamo=False``): its graphs are what ONNX Runtime's fusions recognise."""
    path.parent.mkdir(parents=True, exist_ok=True)
    module.eval()
    torch.onnx.export(
        module,
        tuple(example.values()),
        str(path),
        input_names=list(example),
        output_names=output_names,
        dynamic_axes=dynamic_axes,
        opset_version=opset,
        dynamo=False,
        do_constant_folding=True,
    )
    return path


def session(path: Path, threads: int = 2) -> ort.InferenceSession:
    return cpu_session(path, threads)


def run(sess: ort.InferenceSession, feeds: dict[str, np.ndarray]) -> np.ndarray:
    return sess.run(None, feeds)[0]
