"""ONNX Runtime graph optimization, dynamic INT8 or FP16-stored weights (CPU flavour) and FP16 (GPU flavour)."""

from __future__ import annotations

from pathlib import Path

import onnx


def optimize_transformer(src: Path, dst: Path, num_heads: int, hidden_size: int, skip_layer_norm: bool = True) -> Path:
    """Fuse attention/LayerNorm/GELU with ONNX Runtime's transformer optimizer (needs an eager-attention export).

    ``skip_layer_norm=False`` keeps residual Add + LayerNormalization apart: the CPU graph, where ONNX Runtime's
    fused kernel is the slow one (gateway/inference/onnx_session.py).
    """
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions("bert")
    options.enable_skip_layer_norm = skip_layer_norm
    model = optimize_model(str(src), model_type="bert", num_heads=num_heads, hidden_size=hidden_size, opt_level=1, optimization_options=options)
    model.save_model_to_file(str(dst))
    return dst


def quantize_int8(src: Path, dst: Path) -> Path:
    """Dynamic INT8 weights, per channel with reduced range: plain QInt8 overflowed without VNNI here (PLATFORM.md)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(src),
        str(dst),
        weight_type=QuantType.QInt8,
        per_channel=True,
        reduce_range=True,
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )
    return dst


def to_fp16(src: Path, dst: Path) -> Path:
    """FP16 weights and compute with fp32 inputs/outputs, for GPUs (TensorRT builds its FP16 engine from it)."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    onnx.save(model, str(dst))
    return dst


def store_weights_fp16(src: Path, dst: Path, min_elements: int = 16) -> Path:
    """FP32 graph whose weights are stored as FP16 and cast back once at load (ONNX Runtime folds the casts).

    Half the file at the same FP32 compute: the face model's CPU flavour, where the repository's size
    budget binds and the accuracy must stay the FP32 graph's.
    """
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    casts = []
    for init in list(graph.initializer):
        if init.data_type != TensorProto.FLOAT or int(np.prod(init.dims)) < min_elements:
            continue
        half = numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), f"{init.name}__fp16")
        graph.initializer.remove(init)
        graph.initializer.append(half)
        casts.append(helper.make_node("Cast", [half.name], [init.name], to=TensorProto.FLOAT, name=f"{init.name}__cast"))
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(casts + nodes)
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))
    return dst
