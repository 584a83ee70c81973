"""Every generated config parses as Triton's ModelConfig, in both flavours, and matches its model.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

ROOT = Path(__file__).resolve().parents[2] / "model_repository"
CONFIGS = sorted(ROOT.glob("*/*/config.pbtxt"))


def test_there_are_configs():
    assert any(p.parent.name == "text_emotion" for p in CONFIGS)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parents[1].name}/{p.parent.name}")
def test_config_is_a_valid_triton_model_config(path: Path):
    config = text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
    meta = json.loads((path.parent / "model.json").read_text())
    assert config.name == path.parent.name == meta["name"]
    assert config.max_batch_size == meta["max_batch_size"] > 1
    assert list(config.dynamic_batching.preferred_batch_size)
    assert config.HasField("dynamic_batching")
    assert [i.name for i in config.input] == [i["name"] for i in meta["inputs"]]
    assert [o.name for o in config.output] == [o["name"] for o in meta["outputs"]]
    assert config.output[0].dims[-1] == len(meta["labels"])
    assert config.model_warmup
    assert (path.parent / "1" / "model.onnx").exists()
    if path.parents[1].name == "python":
        assert config.backend == "python"
        assert (path.parent / "1" / "model.py").exists()
        assert "EXECUTION_ENV_PATH" in config.parameters
    else:
        assert config.platform == "onnxruntime_onnx"
        assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
        accelerator = config.optimization.execution_accelerators.gpu_execution_accelerator[0]
        assert accelerator.name == "tensorrt" and accelerator.parameters["precision_mode"] == "FP16"


def test_triton_loads_every_python_flavour_model(triton):
    import httpx

    index = httpx.post(f"{triton.http_url}/v2/repository/index", json={}).json()
    states = {m["name"]: m.get("state") for m in index}
    expected = {p.parent.name for p in CONFIGS if p.parents[1].name == "python"}
    assert {name for name, state in states.items() if state == "READY"} == expected
