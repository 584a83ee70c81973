"""Writes ``model_repository/<flavour>/<model>/`` from one description, in both flavours.

- ``python``: the ``onnxruntime_cpu`` backend (``export/triton_backends/onnxruntime_cpu/model.py``, a Python-based
  Triton backend) runs the ``.onnx`` in ONNX Runtime: the tritonserver from the nvidia-pytriton wheel has only the
  python backend. Each config carries every ONNX Runtime option as a parameter. The stub's environment is
  ``<model>/.python_env``, inside the model folder: a link that the launcher makes in the repository it stages
  for each start (never in this repository).
- ``onnxruntime``: the official Triton image's native backend, on GPU, with TensorRT FP16.

``python -m export.repository [MODEL ...]`` re-renders the configs and ``model.json`` of models already in the
repository from what they hold now (after a change to the rendering), leaving every ``.onnx`` untouched.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from gateway.inference.onnx_session import DISABLED_CPU_FUSIONS
from gateway.model_info import TensorSpec

FLAVOURS = ("python", "onnxruntime")
CPU_BACKEND = "onnxruntime_cpu"
BACKENDS_DIR = Path(__file__).with_name("triton_backends")  # <name>/model.py: Python-based backends the launcher installs
PYTHON_ENV_LINK = ".python_env"
PYTHON_ENV_PATH = f"$$TRITON_MODEL_DIRECTORY/{PYTHON_ENV_LINK}"  # EXECUTION_ENV_PATH of every python-backend model
_TRITON_TYPES = {"int64": "TYPE_INT64", "int32": "TYPE_INT32", "float32": "TYPE_FP32", "float16": "TYPE_FP16", "uint8": "TYPE_UINT8"}


@dataclass
class ModelSpec:
    name: str
    labels: list[str]
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    max_batch_size: int = 32
    preferred_batch_sizes: list[int] = field(default_factory=lambda: [4, 8, 16, 32])
    cpu_preferred_batch_sizes: list[int] | None = None  # the python flavour's, where they differ from the GPU's
    max_queue_delay_us: int = 0  # batch what queues while instances are busy; 2000 µs cost 42% at concurrency 1 and 14% at 32 (bench/report, tuning)
    cpu_instances: int = 1
    gpu_instances: int = 1
    intra_op_threads: int = 2
    inter_op_threads: int = 1
    graph_optimization_level: str = "ORT_ENABLE_ALL"
    disabled_optimizers: list[str] = field(default_factory=lambda: list(DISABLED_CPU_FUSIONS))
    # Idle intra-op threads sleep instead of spinning: the cores are shared with the gateway and the stub, and spinning
    # doubled the CPU per inference here (bench/report, tuning).
    ort_session_config: dict[str, str] = field(
        default_factory=lambda: {"session.intra_op.allow_spinning": "0", "session.inter_op.allow_spinning": "0"}
    )
    length_group_slack_tokens: int = 8  # rows whose lengths differ by at most this many tokens run in one group; -1: each row alone
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
    def row(t: TensorSpec) -> str:
        dims = ", ".join(map(str, spec.warmup_dims.get(t.name, t.dims)))
        return f'    inputs {{ key: "{t.name}" value {{ data_type: {_TRITON_TYPES[t.dtype]} dims: [ {dims} ] zero_data: true }} }}\n'

    inputs = "".join(row(t) for t in spec.inputs)
    return f'model_warmup [\n  {{\n    name: "zeros"\n    batch_size: 1\n{inputs}  }}\n]\n'


def _trt_profile(spec: ModelSpec, which: str) -> str:
    def dims(t: TensorSpec) -> list[int]:
        if which == "min":
            return [1] + [1 if d == -1 else d for d in t.dims]
        if which == "opt":
            return [spec.preferred_batch_sizes[-1]] + spec.warmup_dims.get(t.name, t.dims)
        return [spec.max_batch_size] + spec.trt_max_dims.get(t.name, t.dims)

    return ",".join(f"{t.name}:{'x'.join(map(str, dims(t)))}" for t in spec.inputs)


def length_input(spec: ModelSpec) -> str:
    """The input whose nonzero count is a row's real length (token models): the backend groups rows by it."""
    return "attention_mask" if any(t.name == "attention_mask" for t in spec.inputs) else ""


def backend_parameters(spec: ModelSpec) -> dict[str, str]:
    """Every parameter the ``onnxruntime_cpu`` backend reads, in the order the config lists them."""
    return {
        "EXECUTION_ENV_PATH": PYTHON_ENV_PATH,
        "intra_op_threads": str(spec.intra_op_threads),
        "inter_op_threads": str(spec.inter_op_threads),
        "graph_optimization_level": spec.graph_optimization_level,
        "disabled_optimizers": ",".join(spec.disabled_optimizers),
        **dict(sorted(spec.ort_session_config.items())),
        "length_input": length_input(spec),
        "length_group_slack_tokens": str(spec.length_group_slack_tokens),
    }


def render_config(spec: ModelSpec, flavour: str) -> str:
    """The ``config.pbtxt`` text for one flavour."""
    head = f'name: "{spec.name}"\n'
    if flavour == "python":
        head += f'backend: "{CPU_BACKEND}"\n'
    else:
        head += 'platform: "onnxruntime_onnx"\n'
    text = head + f"max_batch_size: {spec.max_batch_size}\n"
    ragged = spec.ragged_batching and flavour == "python"
    text += _tensor_block("input", spec.inputs, ragged) + _tensor_block("output", spec.outputs)
    preferred = spec.cpu_preferred_batch_sizes if flavour == "python" and spec.cpu_preferred_batch_sizes else spec.preferred_batch_sizes
    text += (
        "dynamic_batching {\n"
        f"  preferred_batch_size: [ {', '.join(map(str, preferred))} ]\n"
        f"  max_queue_delay_microseconds: {spec.max_queue_delay_us}\n"
        "}\n"
    )
    if flavour == "python":
        text += f"instance_group [ {{ count: {spec.cpu_instances} kind: KIND_CPU }} ]\n"
        text += "".join(f'parameters: {{ key: "{k}" value: {{ string_value: "{v}" }} }}\n' for k, v in backend_parameters(spec).items())
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
        write_description(model_dir, spec, flavour)
        for name, src in (files or {}).items():
            shutil.copyfile(src, model_dir / name)
        written.append(model_dir)
    return written


def write_description(model_dir: Path, spec: ModelSpec, flavour: str) -> None:
    """``config.pbtxt`` and ``model.json``: everything in a model folder but its model and data files."""
    (model_dir / "config.pbtxt").write_text(render_config(spec, flavour))
    (model_dir / "model.json").write_text(json.dumps(model_json(spec), indent=2) + "\n")


def read_spec(repository: Path, name: str) -> ModelSpec:
    """The description a model in the repository was written from, read back from its two configs and ``model.json``."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    def parse(flavour: str):
        return text_format.Parse((repository / flavour / name / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())

    cpu, gpu = parse("python"), parse("onnxruntime")
    meta = json.loads((repository / "python" / name / "model.json").read_text())
    params = {k: v.string_value for k, v in cpu.parameters.items()}
    accelerator = {p: v for a in gpu.optimization.execution_accelerators.gpu_execution_accelerator for p, v in a.parameters.items()}
    max_shapes = dict(item.split(":") for item in accelerator.get("trt_profile_max_shapes", "").split(",") if item)
    defaults = ModelSpec(name, [], [], [])
    return ModelSpec(
        name=meta["name"],
        labels=meta["labels"],
        inputs=[TensorSpec(**t) for t in meta["inputs"]],
        outputs=[TensorSpec(**t) for t in meta["outputs"]],
        max_batch_size=cpu.max_batch_size,
        preferred_batch_sizes=list(gpu.dynamic_batching.preferred_batch_size),
        cpu_preferred_batch_sizes=(
            list(cpu.dynamic_batching.preferred_batch_size)
            if list(cpu.dynamic_batching.preferred_batch_size) != list(gpu.dynamic_batching.preferred_batch_size)
            else None
        ),
        max_queue_delay_us=cpu.dynamic_batching.max_queue_delay_microseconds,
        cpu_instances=cpu.instance_group[0].count,
        gpu_instances=gpu.instance_group[0].count,
        intra_op_threads=int(params["intra_op_threads"]),
        inter_op_threads=int(params.get("inter_op_threads", defaults.inter_op_threads)),
        graph_optimization_level=params.get("graph_optimization_level", defaults.graph_optimization_level),
        disabled_optimizers=[n for n in params.get("disabled_optimizers", "").split(",") if n],
        ort_session_config={k: v for k, v in params.items() if k.startswith("session.")} or defaults.ort_session_config,
        length_group_slack_tokens=int(params.get("length_group_slack_tokens", defaults.length_group_slack_tokens)),
        ragged_batching=any(i.allow_ragged_batch for i in cpu.input),
        warmup_dims={key: list(value.dims) for w in cpu.model_warmup[:1] for key, value in w.inputs.items()},
        trt_max_dims={key: [int(d) for d in shape.split("x")[1:]] for key, shape in max_shapes.items()},
        preprocessing=meta.get("preprocessing", {}),
        calibration=meta.get("calibration", {}),
    )


def rerender(repository: Path, name: str) -> ModelSpec:
    """Rewrite a served model's configs and ``model.json`` in both flavours from ``read_spec``; its files stay as they are."""
    spec = read_spec(repository, name)
    for flavour in FLAVOURS:
        write_description(repository / flavour / name, spec, flavour)
    return spec


def main(argv: list[str] | None = None) -> None:
    import argparse

    p = argparse.ArgumentParser(description="Re-render config.pbtxt and model.json of models in the repository (their .onnx untouched).")
    p.add_argument("models", nargs="*", help=f"default: every model the {CPU_BACKEND} backend serves")
    p.add_argument("--repository", type=Path, default=Path("model_repository"))
    args = p.parse_args(argv)
    names = args.models or sorted(
        c.parent.name for c in (args.repository / "python").glob("*/config.pbtxt") if f'backend: "{CPU_BACKEND}"' in c.read_text()
    )
    for name in names:
        rerender(args.repository, name)
        print(f"re-rendered {name}")


if __name__ == "__main__":
    main()
