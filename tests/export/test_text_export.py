"""A smoke text model trained on a few hundred rows, exported: ONNX matches PyTorch, INT8 is recorded, the repository loads."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, shared_data):
    from training.text import TextTrainConfig, train_text

    out = tmp_path_factory.mktemp("text_run")
    report = train_text(TextTrainConfig(data_dir=shared_data / "text", out_dir=out, epochs=1, limit=300, test_limit=64, batch_size=32))
    return out, report


def test_training_writes_checkpoint_and_report(smoke_run):
    out, report = smoke_run
    assert (out / "model.pt").exists()
    assert (out / "confusion_matrix.png").stat().st_size > 1000
    assert report["labels"] == ["joy", "sadness", "anger", "fear", "surprise"]
    assert 0 <= report["test_pytorch_fp32"]["accuracy"] <= 1
    assert report["history"][0]["epoch"] == 1


def test_export_checks_parity_and_writes_both_flavours(smoke_run, tmp_path, shared_data):
    from export.pipeline import ExportOptions
    from export.text import export

    out, _ = smoke_run
    report = export(ExportOptions(run_dir=out, repository=tmp_path, data_dir=shared_data / "text", test_limit=64))
    assert report["parity_max_abs_diff_fp32"] < 1e-4
    assert {"test_onnx_fp32", "test_onnx_int8 (served on CPU)"} <= set(report)
    assert report["history"][0]["val_loss"] > 0  # every epoch reports validation loss and accuracy
    calibration = report["calibration"]
    assert calibration["rows"] == 30 and calibration["temperature"] > 0  # the validation split: 10% of the 300 rows
    assert calibration["test_as_served"]["rows"] == 64
    assert json.loads((tmp_path / "python" / "text_emotion" / "model.json").read_text())["calibration"] == {"temperature": calibration["temperature"]}
    assert (tmp_path / "reports" / "text_emotion" / "reliability.png").exists()
    for flavour in ("python", "onnxruntime"):
        model_dir = tmp_path / flavour / "text_emotion"
        assert (model_dir / "1" / "model.onnx").exists()
        assert json.loads((model_dir / "model.json").read_text())["labels"][0] == "joy"
        assert (model_dir / "tokenizer.json").exists()
    assert (tmp_path / "reports" / "text_emotion" / "REPORT.md").exists()


def test_cpu_graph_keeps_residual_layer_norm_unfused(smoke_run, tmp_path, shared_data):
    """ONNX Runtime's CPU SkipLayerNormalization is the slow kernel: the INT8 graph keeps Add + LayerNormalization,
    and a session with the disabled fusions (as ``cpu_session`` and the Triton model.py make it) does not fuse them back."""
    import onnx
    import onnxruntime as ort

    from export.pipeline import ExportOptions
    from export.text import export
    from gateway.inference.onnx_session import DISABLED_CPU_FUSIONS

    out, _ = smoke_run
    export(ExportOptions(run_dir=out, repository=tmp_path, data_dir=shared_data / "text", test_limit=8))
    path = tmp_path / "python" / "text_emotion" / "1" / "model.onnx"
    ops = lambda p: {n.op_type for n in onnx.load(str(p)).graph.node}  # noqa: E731
    assert "LayerNormalization" in ops(path) and "SkipLayerNormalization" not in ops(path)
    expected = f'key: "disabled_optimizers" value: {{ string_value: "{",".join(DISABLED_CPU_FUSIONS)}" }}'
    assert expected in (path.parents[1] / "config.pbtxt").read_text()
    for disabled, fused in ((list(DISABLED_CPU_FUSIONS), False), ([], True)):
        options = ort.SessionOptions()
        options.optimized_model_filepath = str(tmp_path / "session_graph.onnx")
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"], disabled_optimizers=disabled)
        assert ("SkipLayerNormalization" in ops(tmp_path / "session_graph.onnx")) is fused


def test_parity_check_fails_loudly(tmp_path):
    import numpy as np
    import torch

    from export.onnx import export_onnx
    from export.parity import ParityError, check_parity

    model = torch.nn.Linear(4, 3)
    path = export_onnx(model, {"input": torch.zeros(2, 4)}, ["y"], {"input": {0: "b"}}, tmp_path / "m.onnx")
    with torch.no_grad():
        model.weight += 1.0  # the graph no longer matches the module
    with pytest.raises(ParityError):
        check_parity(model, path, [{"input": np.ones((2, 4), dtype=np.float32)}], atol=1e-4)
