"""Writes ``model_repository/<flavour>/<model>/`` from one description, in both flavours.

- ``python``: a python-backend ``model.py`` runs the ``.onnx`` in ONNX Runtime (the tritonserver from the
  nvidia-pytriton wheel has only that backend); the stub's environment is ``<flavour>/.python_env``, a link the
  launcher makes to a venv with numpy<2.
- ``onnxruntime``: the official Triton image's native backend, on GPU, with TensorRT FP16.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from gateway.inference.onnx_session import DISABLED_CPU_FUSIONS
from gateway.model_info import TensorSpec

FLAVOURS = ("python", "onnxruntime")
PYTHON_ENV_LINK = ".python_env"
_TRITON_TYPES = {"int64": "TYPE_INT64", "int32": "TYPE_INT32", "float32": "TYPE_FP32", "float16": "TYPE_FP16", "uint8": "TYPE_UINT8"}


@dataclass
class ModelSpec:
    name: str
    labels: list[str]
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    max_batch_size: int = 32
    preferred_batch_sizes: list[int] = field(default_factory=lambda: [4, 8, 16, 32])
    max_queue_delay_us: int = 0  # batch what queues while instances are busy; 2000 µs cost 42% at concurrency 1 and 14% at 32 (bench/report, tuning)
    cpu_instances: int = 1
    gpu_instances: int = 1
    intra_op_threads: int = 2
    ragged_batching: bool = False  # python flavour: batch requests of different widths (model.py groups them by length)
    warmup_dims: dict[str, list[int]] = field(default_factory=dict)  # concrete dims per input for warm-up
    trt_max_dims: dict[str, list[int]] = field(default_factory=dict)  # largest dims per input, for TensorRT profiles
    preprocessing: dict = field(default_factory=dict)
    calibration: dict = field(default_factory=dict)  # e.g. {"temperature": T}: how the gateway calibrates the model's probabilities


def _tensor_block(kind: str, tensors: list[TensorSpec], ragged: bool = False) -> str:
    extra = " allow_ragged_batch: true" if ragged else ""
    rows = [f'  {{ name: "{t.name}" data_type: {_TRITON_TYPES[t.dtype]} dims: [ {", ".join(map(str, t.dims))} ]{extra} }}' for t in tensors]
    return f"{kind} [\n" + ",\n".join(rows) + "\n]\n"


def _warmup_block(spec: ModelSpec) -> str:
    inputs = "".join(
        f'    inputs {{ key: "{t.name}" value {{ data_type: {_TRITON_TYPES[t.dtype]} dims: [ {", ".join(map(str, spec.warmup_dims.get(t.name, t.dims)))} ] zero_data: true }} }}\n'
        for t in spec.inputs
    )
    return f'model_warmup [\n  {{\n    name: "zeros"\n    batch_size: 1\n{inputs}  }}\n]\n'


def _trt_profile(spec: ModelSpec, which: str) -> str:
    def dims(t: TensorSpec) -> list[int]:
        if which == "min":
            return [1] + [1 if d == -1 else d for d in t.dims]
        if which == "opt":
            return [spec.preferred_batch_sizes[-1]] + spec.warmup_dims.get(t.name, t.dims)
        return [spec.max_batch_size] + spec.trt_max_dims.get(t.name, t.dims)

    return ",".join(f"{t.name}:{'x'.join(map(str, dims(t)))}" for t in spec.inputs)


def render_config(spec: ModelSpec, flavour: str) -> str:
    """The ``config.pbtxt`` text for one flavour."""
    head = f'name: "{spec.name}"\n'
    if flavour == "python":
        head += 'backend: "python"\n'
    else:
        head += 'platform: "onnxruntime_onnx"\n'
    text = head + f"max_batch_size: {spec.max_batch_size}\n"
    ragged = spec.ragged_batching and flavour == "python"
    text += _tensor_block("input", spec.inputs, ragged) + _tensor_block("output", spec.outputs)
    text += (
        "dynamic_batching {\n"
        f"  preferred_batch_size: [ {', '.join(map(str, spec.preferred_batch_sizes))} ]\n"
        f"  max_queue_delay_microseconds: {spec.max_queue_delay_us}\n"
        "}\n"
    )
    if flavour == "python":
        text += f"instance_group [ {{ count: {spec.cpu_instances} kind: KIND_CPU }} ]\n"
        text += f'parameters: {{ key: "EXECUTION_ENV_PATH" value: {{ string_value: "$$TRITON_MODEL_DIRECTORY/../{PYTHON_ENV_LINK}" }} }}\n'
        text += f'parameters: {{ key: "intra_op_threads" value: {{ string_value: "{spec.intra_op_threads}" }} }}\n'
        text += f'parameters: {{ key: "disabled_optimizers" value: {{ string_value: "{",".join(DISABLED_CPU_FUSIONS)}" }} }}\n'
    else:
        text += f"instance_group [ {{ count: {spec.gpu_instances} kind: KIND_GPU }} ]\n"
        params = {
            "precision_mode": "FP16",
            "max_workspace_size_bytes": "1073741824",
            "trt_engine_cache_enable": "1",
            "trt_engine_cache_path": "/tmp/triton_trt_cache",
            "trt_profile_min_shapes": _trt_profile(spec, "min"),
            "trt_profile_opt_shapes": _trt_profile(spec, "opt"),
            "trt_profile_max_shapes": _trt_profile(spec, "max"),
        }
        rendered = "".join(f'        parameters {{ key: "{k}" value: "{v}" }}\n' for k, v in params.items())
        text += (
            "optimization {\n  execution_accelerators {\n    gpu_execution_accelerator: [\n"
            f'      {{\n        name: "tensorrt"\n{rendered}      }}\n'
            "    ]\n  }\n}\n"
        )
    return text + _warmup_block(spec)


def model_json(spec: ModelSpec) -> dict:
    return {
        "name": spec.name,
        "labels": spec.labels,
        "inputs": [asdict(t) for t in spec.inputs],
        "outputs": [asdict(t) for t in spec.outputs],
        "max_batch_size": spec.max_batch_size,
        "preprocessing": spec.preprocessing,
        "calibration": spec.calibration,
    }


def write_model(repository: Path, spec: ModelSpec, onnx_by_flavour: dict[str, Path], files: dict[str, Path] | None = None) -> list[Path]:
    """Write the model in both flavours; ``files`` (tokenizer, feature statistics, report…) travel with it."""
    written = []
    for flavour in FLAVOURS:
        model_dir = repository / flavour / spec.name
        version = model_dir / "1"
        if model_dir.exists():
            shutil.rmtree(model_dir)
        version.mkdir(parents=True)
        shutil.copyfile(onnx_by_flavour[flavour], version / "model.onnx")
        if flavour == "python":
            shutil.copyfile(Path(__file__).with_name("triton_python_model.py"), version / "model.py")
        (model_dir / "config.pbtxt").write_text(render_config(spec, flavour))
        (model_dir / "model.json").write_text(json.dumps(model_json(spec), indent=2) + "\n")
        for name, src in (files or {}).items():
            shutil.copyfile(src, model_dir / name)
        written.append(model_dir)
    return written
