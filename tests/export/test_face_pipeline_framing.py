"""face_pipeline's framing, on the committed ONNX models in process: a face filling the frame is classified on the
whole frame (``detect=false``'s framing) averaged with its crop, a face in a photo on its crop; photos without a face
still get none; the second look (measured by bench/face_pipeline_tuning, not served) keeps only a face filling the frame."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest

from bench.face_detection import _pipeline_config
from export.face_pipeline_model import FacePipeline
from gateway.preprocessing.image import load_image_file, normalize, whole_image
from tests.conftest import ROOT

REPOSITORY = ROOT / "model_repository" / "python"

pytestmark = pytest.mark.skipif(
    not (REPOSITORY / "face_detection" / "1" / "model.onnx").exists() or not (REPOSITORY / "face_emotion" / "1" / "model.onnx").exists(),
    reason="face_detection / face_emotion are not exported",
)


@pytest.fixture(scope="module")
def sessions():
    def session(name: str) -> ort.InferenceSession:
        return ort.InferenceSession(str(REPOSITORY / name / "1" / "model.onnx"), providers=["CPUExecutionProvider"])

    return session("face_detection"), session("face_emotion")


def pipeline(sessions, **overrides) -> FacePipeline:
    detector, classifier = sessions
    return FacePipeline(
        lambda x: detector.run(["regressors", "classificators"], {"image": x}),
        lambda x: classifier.run(["probabilities"], {"image": x})[0],
        {**_pipeline_config(REPOSITORY), **overrides},
    )


def fer_files(shared_data: Path, n: int) -> list[Path]:
    files = sorted((shared_data / "fer2013" / "val").glob("*/*.jpg"))
    return files[:: max(1, len(files) // n)][:n]


def test_a_face_filling_the_frame_is_also_classified_on_the_whole_frame(sessions, shared_data):
    pipe = pipeline(sessions)
    assert pipe.whole_frame_above > 0 and 0 < pipe.whole_frame_blend < 1
    classifier = sessions[1]
    checked = 0
    for path in fer_files(shared_data, 12):
        image = load_image_file(path)
        boxes, _ = pipe.detect_many([image])[0]
        if not len(boxes):
            continue
        (whole, whole_weight), (crop, crop_weight) = pipe.inputs(image, boxes[0])
        assert np.array_equal(np.round(whole), whole_image(image))  # a 48×48 file: its own pixels, as detect=false sends it
        expected = whole_weight * classifier.run(["probabilities"], {"image": normalize(whole_image(image))})[0][0]
        expected += crop_weight * classifier.run(["probabilities"], {"image": normalize(np.round(np.clip(crop, 0, 255)))})[0][0]
        got = pipe([image])[0][2][0]
        assert np.abs(got - expected).max() < 1e-5
        checked += 1
    assert checked >= 10


def test_a_face_in_a_photo_is_classified_on_its_crop_alone(sessions):
    pipe = pipeline(sessions)
    astronaut = cv2.imread(str(Path(list(importlib.util.find_spec("skimage").submodule_search_locations)[0]) / "data" / "astronaut.png"))
    gray = cv2.cvtColor(astronaut, cv2.COLOR_BGR2GRAY)
    boxes, _ = pipe.detect_many([gray])[0]
    assert len(boxes) == 1
    assert [weight for _, weight in pipe.inputs(gray, boxes[0])] == [1.0]


def test_the_second_look_finds_tight_crops_the_first_missed_and_only_large_faces(sessions, shared_data):
    first_only = pipeline(sessions)
    assert first_only.rescue_threshold >= 1.0  # not served: it also found faces in crops of photos without one
    served = pipeline(sessions, rescue_threshold=0.4, rescue_pad=0.25, rescue_min_face=0.7)
    rescued = 0
    for path in fer_files(shared_data, 400):
        image = load_image_file(path)
        if len(first_only.detect_many([image])[0][0]):
            continue
        boxes, _ = served.detect_many([image])[0]
        if len(boxes):
            rescued += 1
            assert np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]).min() >= served.rescue_min_face * max(image.shape)
    assert rescued >= 1


@pytest.mark.parametrize("name", ["coffee.png", "chelsea.png", "rocket.jpg", "brick.png", "text.png", "blank"])
def test_photos_without_a_face_still_get_none(sessions, name):
    if name == "blank":
        image = np.full((480, 640), 170, np.uint8)
    else:
        path = Path(list(importlib.util.find_spec("skimage").submodule_search_locations)[0]) / "data" / name
        image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    assert len(pipeline(sessions).detect_many([image])[0][0]) == 0
