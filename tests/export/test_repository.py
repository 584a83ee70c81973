"""Every generated config parses as Triton's ModelConfig, in both flavours, and matches its model.json; the python
flavour is served by the one ``onnxruntime_cpu`` backend, configured by parameters alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from export.repository import BACKENDS_DIR, CPU_BACKEND, FLAVOURS, read_spec, render_config

REQUIRED = (
    "intra_op_threads",
    "inter_op_threads",
    "graph_optimization_level",
    "disabled_optimizers",
    "length_input",
    "length_group_slack_tokens",
    "session.intra_op.allow_spinning",
)

ROOT = Path(__file__).resolve().parents[2] / "model_repository"
CONFIGS = sorted(ROOT.glob("*/*/config.pbtxt"))


def test_there_are_configs():
    assert any(p.parent.name == "text_emotion" for p in CONFIGS)


def _parse(path: Path) -> model_config_pb2.ModelConfig:
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parents[1].name}/{p.parent.name}")
def test_config_is_a_valid_triton_model_config(path: Path):
    config = _parse(path)
    meta = json.loads((path.parent / "model.json").read_text())
    assert config.name == path.parent.name == meta["name"]
    assert config.max_batch_size == meta["max_batch_size"] > 1
    assert config.HasField("dynamic_batching")
    assert [i.name for i in config.input] == [i["name"] for i in meta["inputs"]]
    assert [o.name for o in config.output] == [o["name"] for o in meta["outputs"]]
    if config.backend == "python":  # a model with its own code (a BLS pipeline), in either flavour
        assert (path.parent / "1" / "model.py").exists()
        if path.parents[1].name == "python" or "EXECUTION_ENV_PATH" in config.parameters:  # the GPU image's python has numpy
            assert config.parameters["EXECUTION_ENV_PATH"].string_value == "$$TRITON_MODEL_DIRECTORY/.python_env"  # inside the folder
        return
    assert list(config.dynamic_batching.preferred_batch_size)
    assert config.model_warmup
    assert (path.parent / "1" / "model.onnx").exists()
    if "probabilities" in meta["outputs"][0]["name"]:
        assert config.output[0].dims[-1] == len(meta["labels"])
    if path.parents[1].name == "python":
        assert config.backend == CPU_BACKEND
        assert not (path.parent / "1" / "model.py").exists(), "the backend's model.py serves every model: no copy in the folder"
        assert config.parameters["EXECUTION_ENV_PATH"].string_value == "$$TRITON_MODEL_DIRECTORY/.python_env"  # inside the folder
        assert set(REQUIRED) <= set(config.parameters)
    else:
        assert config.platform == "onnxruntime_onnx"
        assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
        accelerator = config.optimization.execution_accelerators.gpu_execution_accelerator[0]
        assert accelerator.name == "tensorrt" and accelerator.parameters["precision_mode"] == "FP16"


MODELS = sorted(p.parent.name for p in ROOT.glob("python/*/config.pbtxt") if _parse(p).backend == CPU_BACKEND)


@pytest.mark.parametrize("name", MODELS)
def test_configs_render_back_from_what_the_repository_holds(name: str):
    """read_spec + render_config reproduce each config byte for byte: rendering is deterministic and re-rendering
    (``python -m export.repository``) changes nothing but what the rendering itself changes."""
    spec = read_spec(ROOT, name)
    for flavour in FLAVOURS:
        assert render_config(spec, flavour) == (ROOT / flavour / name / "config.pbtxt").read_text(), flavour


def test_the_backend_reads_every_parameter_the_configs_carry():
    source = (BACKENDS_DIR / CPU_BACKEND / "model.py").read_text()
    for key in REQUIRED[:-1]:
        assert f'"{key}"' in source, key
    assert 'startswith("session.")' in source


def test_the_backend_is_package_data():
    """pyproject's package-data glob ships the backend with the ``export`` package."""
    import tomllib

    globs = tomllib.loads((ROOT.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["export"]
    shipped = {p for g in globs for p in BACKENDS_DIR.parent.glob(g)}
    assert BACKENDS_DIR / CPU_BACKEND / "model.py" in shipped


def test_triton_loads_every_python_flavour_model(triton):
    import httpx

    index = httpx.post(f"{triton.http_url}/v2/repository/index", json={}, headers=triton.control_headers).json()
    states = {m["name"]: m.get("state") for m in index}
    expected = {p.parent.name for p in CONFIGS if p.parents[1].name == "python"}
    assert {name for name, state in states.items() if state == "READY"} == expected


def test_the_backend_refuses_a_config_without_its_parameters(tmp_path: Path):
    """A config that lacks an ONNX Runtime option fails to load with a message naming it (no silent default)."""
    from bench.common import link_model_copy
    from emotune.triton_server import TritonError, TritonServer
    from tests.conftest import free_port

    repo = tmp_path / "repo"
    folder = link_model_copy(ROOT / "python" / "face_emotion", repo / "face_emotion")
    config = (folder / "config.pbtxt").read_text()
    (folder / "config.pbtxt").write_text("".join(line for line in config.splitlines(keepends=True) if '"inter_op_threads"' not in line))
    server = TritonServer(
        repo, ["face_emotion"], http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(), log_file=tmp_path / "triton.log"
    )
    with server, pytest.raises(TritonError, match="lacks parameters inter_op_threads"):
        server.wait_ready(timeout=120)
