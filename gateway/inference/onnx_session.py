"""ONNX Runtime sessions on CPU, configured one way wherever our models run in process (gateway, export, bench).

The python-flavour ``model.py`` that Triton runs cannot import this package; it gets the same list of disabled
fusions from its ``config.pbtxt`` (``export.repository`` writes it from ``DISABLED_CPU_FUSIONS``).
"""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort

# ONNX Runtime 1.32's CPU SkipLayerNormalization kernel ran 7.5x slower than Add + LayerNormalization on the same
# [1024, 384] tensor here, and the fused text encoder spent 23% of its time in it; the export leaves the CPU graph
# unfused, and this keeps the session from fusing it back at load (bench/README, findings).
DISABLED_CPU_FUSIONS = ("SkipLayerNormFusion",)


def cpu_session(model: Path | bytes, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"], disabled_optimizers=list(DISABLED_CPU_FUSIONS))
