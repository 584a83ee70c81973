"""FP16-stored weights: half the file, the FP32 graph's answers."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")


def test_fp16_stored_weights_halve_the_file_and_keep_the_answers(tmp_path):
    from export.onnx import export_onnx, run, session
    from export.quantize import store_weights_fp16

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 64, 5),
        torch.nn.BatchNorm2d(64),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(64, 256),
        torch.nn.ReLU(),
        torch.nn.Linear(256, 7),
        torch.nn.Softmax(-1),
    ).eval()
    x = torch.randn(4, 1, 48, 48)
    fp32 = export_onnx(net, {"image": x}, ["probabilities"], {"image": {0: "batch"}}, tmp_path / "fp32.onnx")
    half = store_weights_fp16(fp32, tmp_path / "fp16_weights.onnx")

    assert half.stat().st_size < 0.6 * fp32.stat().st_size
    graph = onnx.load(str(half)).graph
    assert [i.data_type for i in graph.initializer if np.prod(i.dims) >= 16] and all(
        i.data_type == onnx.TensorProto.FLOAT16 for i in graph.initializer if np.prod(i.dims) >= 16
    )
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    feeds = {"image": x.numpy()}
    np.testing.assert_allclose(run(session(half), feeds), run(session(fp32), feeds), atol=1e-3)


def test_onnx_runtime_folds_the_casts_at_load(tmp_path):
    """The claim behind "same FP32 compute": after ONNX Runtime's load-time optimization no Cast is left to run."""
    import onnxruntime as ort

    from export.onnx import export_onnx
    from export.quantize import store_weights_fp16

    net = torch.nn.Sequential(torch.nn.Conv2d(1, 64, 5), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.LazyLinear(7)).eval()
    x = torch.randn(2, 1, 12, 12)
    net(x)
    half = store_weights_fp16(export_onnx(net, {"image": x}, ["logits"], {"image": {0: "batch"}}, tmp_path / "fp32.onnx"), tmp_path / "half.onnx")
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "loaded.onnx")
    ort.InferenceSession(str(half), options, providers=["CPUExecutionProvider"])
    assert any(n.op_type == "Cast" for n in onnx.load(str(half)).graph.node)
    assert not any(n.op_type == "Cast" for n in onnx.load(str(tmp_path / "loaded.onnx")).graph.node)
