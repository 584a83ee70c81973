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


def per_row_activations(src: Path, dst: Path, eps: float = 1e-12) -> Path:
    """The dynamic INT8 graph with each row's activations quantized on their own scale, so a row's answer never depends
    on the rows (or padding) that share its batch: ``DynamicQuantizeLinear`` takes one scale and zero point over the
    whole [batch, tokens, hidden] tensor.

    Every ``DynamicQuantizeLinear`` becomes a symmetric quantization per token (max |x| over the hidden axis / 127,
    a blocked ``QuantizeLinear`` of opset 21) stored as uint8 around zero point 128: ONNX Runtime's u8×s8 kernel is the
    fast one on AVX2 (s8×s8 ran 10× slower here). Its ``MatMulInteger`` consumers keep their int8 weights, as
    ``MatMulIntegerToFloat`` (weight scales applied in the kernel), then multiply by the row scales. ``QAttention``
    (whose input scale is a scalar) becomes the same integer QKV projection followed by ``MultiHeadAttention`` with
    the QKV bias and the key-length mask.

    The mean pooling's sum over tokens (ReduceSum over axis 1) becomes a product with a transposed ones vector per
    row: ONNX Runtime's ReduceSum added in another order once the batch had more than one row (2e-6 apart), which
    the head's rounding to int8 turned into 1e-4; the batched, transposed-A MatMul sums each row on its own in token
    order (a plain ones-row MatMul still moved by 1e-7 with padding). The result is bitwise the row's answer alone.
    """
    import numpy as np
    from onnx import helper, numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    producers = {out: node for node in graph.node for out in node.output}
    dql = {node.output[0]: node for node in graph.node if node.op_type == "DynamicQuantizeLinear"}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def const(name: str, value) -> str:
        graph.initializer.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    axes, inv127 = const("per_row/axes", np.array([-1], np.int64)), const("per_row/inv127", np.array(1 / 127, np.float32))
    one_1d = const("per_row/one_1d", np.array([1], np.int64))
    floor, one = const("per_row/eps", np.array(eps, np.float32)), const("per_row/one", np.array(1, np.float32))
    zero_point, zero_point_1d = const("per_row/zero_point", np.array(128, np.uint8)), const("per_row/zero_point_1d", np.array([128], np.uint8))
    new_nodes, dropped, row = [], set(), {}

    def is_token_sum(node) -> bool:
        """A ReduceSum over axis 1 of a [batch, tokens, hidden] product, keepdims 0: the mean pooling's masked sum."""
        if node.op_type != "ReduceSum" or len(node.input) < 2 or node.input[1] not in inits or node.input[0] not in producers:
            return False
        keepdims = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "keepdims"), 1)
        return numpy_helper.to_array(inits[node.input[1]]).tolist() == [1] and keepdims == 0 and producers[node.input[0]].op_type == "Mul"

    def quantize_rows(quantized: str, width: int) -> tuple[str, str]:
        """uint8 rows (zero point 128) and their scales [.., 1] for the input of the ``DynamicQuantizeLinear`` that made ``quantized``."""
        if quantized not in row:
            src_node = dql[quantized]
            x, tag = src_node.input[0], src_node.name or quantized
            new_nodes.extend(
                [
                    helper.make_node("Abs", [x], [f"{tag}/abs"], name=f"{tag}/abs"),
                    helper.make_node("ReduceMax", [f"{tag}/abs", axes], [f"{tag}/amax"], keepdims=1, name=f"{tag}/amax"),
                    helper.make_node("Max", [f"{tag}/amax", floor], [f"{tag}/amax_floor"], name=f"{tag}/amax_floor"),
                    helper.make_node("Mul", [f"{tag}/amax_floor", inv127], [f"{tag}/row_scale"], name=f"{tag}/row_scale"),
                    helper.make_node("Shape", [f"{tag}/row_scale"], [f"{tag}/scale_shape"], name=f"{tag}/scale_shape"),
                    helper.make_node("Expand", [zero_point_1d, f"{tag}/scale_shape"], [f"{tag}/row_zero_point"], name=f"{tag}/row_zero_point"),
                    helper.make_node(
                        "QuantizeLinear",
                        [x, f"{tag}/row_scale", f"{tag}/row_zero_point"],
                        [f"{tag}/uint8"],
                        axis=-1,
                        block_size=width,
                        name=f"{tag}/q",
                    ),
                ]
            )
            row[quantized] = (f"{tag}/uint8", f"{tag}/row_scale")
            dropped.add(id(src_node))
        return row[quantized]

    def integer_matmul(x_q: str, weight: str, weight_zp: str, weight_scale: str, out: str, tag: str) -> None:
        rows_uint8, row_scale = quantize_rows(x_q, inits[weight].dims[0])
        new_nodes.extend(
            [
                helper.make_node(
                    "MatMulIntegerToFloat",
                    [rows_uint8, weight, one, weight_scale, zero_point, weight_zp],
                    [f"{tag}/weight_scaled"],
                    domain="com.microsoft",
                    name=f"{tag}/mm",
                ),
                helper.make_node("Mul", [f"{tag}/weight_scaled", row_scale], [out], name=f"{tag}/row_scale"),
            ]
        )

    for node in graph.node:
        if node.op_type == "MatMulInteger" and node.input[0] in dql:
            zp = numpy_helper.to_array(inits[node.input[3]])
            if zp.dtype != np.int8 or zp.any():
                raise ValueError(f"{node.name}: per-row rewrite needs symmetric int8 weights")
            cast = consumers[node.output[0]][0]
            mul = consumers[cast.output[0]][0]
            scales = producers[next(i for i in mul.input if i != cast.output[0])]
            weight_scale = next(i for i in scales.input if i in inits)
            integer_matmul(node.input[0], node.input[1], node.input[3], weight_scale, mul.output[0], node.name)
            dropped.update({id(node), id(cast), id(mul), id(scales)})
        elif node.op_type == "QAttention":
            x_q, weight, bias, _, weight_scale, mask, _, weight_zp = node.input[:8]
            heads = next(helper.get_attribute_value(a) for a in node.attribute if a.name == "num_heads")
            hidden = inits[weight].dims[1] // 3
            tag = node.name
            integer_matmul(x_q, weight, weight_zp, weight_scale, f"{tag}/qkv", tag)
            split = const(f"{tag}/split_sizes", np.array([hidden] * 3, np.int64))
            new_nodes.extend(
                [
                    helper.make_node("Split", [f"{tag}/qkv", split], [f"{tag}/q", f"{tag}/k", f"{tag}/v"], axis=-1, name=f"{tag}/split"),
                    helper.make_node(
                        "MultiHeadAttention",
                        [f"{tag}/q", f"{tag}/k", f"{tag}/v", bias, mask],
                        list(node.output),
                        domain="com.microsoft",
                        num_heads=heads,
                        name=f"{tag}/mha",
                    ),
                ]
            )
            dropped.add(id(node))
        elif is_token_sum(node):
            x, tag = node.input[0], node.name or node.output[0]
            new_nodes.extend(
                [
                    helper.make_node("Shape", [x], [f"{tag}/batch"], start=0, end=1, name=f"{tag}/batch"),
                    helper.make_node("Shape", [x], [f"{tag}/tokens"], start=1, end=2, name=f"{tag}/tokens"),
                    helper.make_node("Concat", [f"{tag}/batch", f"{tag}/tokens", one_1d], [f"{tag}/ones_shape"], axis=0, name=f"{tag}/ones_shape"),
                    helper.make_node(
                        "ConstantOfShape",
                        [f"{tag}/ones_shape"],
                        [f"{tag}/ones"],
                        value=numpy_helper.from_array(np.ones(1, np.float32)),
                        name=f"{tag}/ones",
                    ),
                    helper.make_node("Transpose", [f"{tag}/ones"], [f"{tag}/ones_t"], perm=[0, 2, 1], name=f"{tag}/ones_t"),
                    helper.make_node("MatMul", [f"{tag}/ones_t", x], [f"{tag}/sum"], name=f"{tag}/sum"),
                    helper.make_node("Squeeze", [f"{tag}/sum", one_1d], list(node.output), name=f"{tag}/squeeze"),
                ]
            )
        elif node.op_type != "DynamicQuantizeLinear":
            new_nodes.append(node)
    leftover = [n.name for n in graph.node if n.op_type == "DynamicQuantizeLinear" and id(n) not in dropped]
    if leftover:
        raise ValueError(f"per-row rewrite left DynamicQuantizeLinear nodes with other consumers: {leftover}")
    ordered = [n for n in new_nodes if id(n) not in dropped]
    del graph.node[:]
    graph.node.extend(ordered)
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx"):
            opset.version = max(opset.version, 21)
    model.ir_version = max(model.ir_version, 10)
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))
    return dst
