"""face_pipeline's framing, on the committed ONNX models in process: a face filling the frame is classified on the
whole frame (``detect=false``'s framing) averaged with its crop, a face in a photo on its crop; photos without a face
still get none; the second look, turned, keeps only a face filling the frame and maps its box back to the photo."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest

from bench.face_detection import _pipeline_config
from export.face_pipeline_model import FacePipeline, rotated_view, unrotate
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
    served = pipeline(sessions)
    assert served.rescue_threshold < 1.0 and len(served.rescue_angles) > 1
    first_only = pipeline(sessions, rescue_threshold=1.0)
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


def test_a_turned_view_shows_the_point_that_unrotate_maps_back():
    image = np.zeros((90, 120), np.uint8)
    image[20:24, 90:94] = 255
    for angle in (-30.0, 15.0):
        view = rotated_view(image, -20, -35, 160, 128, angle)
        qy, qx = np.unravel_index(int(np.argmax(view)), view.shape)
        px, py = unrotate((qx + 0.5) / 128 - 0.5, (qy + 0.5) / 128 - 0.5, angle)
        x, y = (px + 0.5) * 160 - 20, (py + 0.5) * 160 - 35
        assert abs(x - 92) < 2.5 and abs(y - 22) < 2.5


@pytest.mark.parametrize("angle", [-28, 32])
def test_the_second_look_finds_a_turned_face_where_it_is(sessions, shared_data, angle):
    served = pipeline(sessions)
    sample = load_image_file(shared_data / "samples" / "surprised.jpg")
    (box,), _ = served.detect_many([sample])[0]
    half, cx, cy = 0.7 * (box[2] - box[0]), (box[0] + box[2]) / 2, (box[1] + box[3]) / 2  # a tight crop: the face is 0.7 of it
    photo = sample[int(cy - half) : int(cy + half), int(cx - half) : int(cx + half)]
    (upright,), _ = served.detect_many([photo])[0]
    turn = cv2.getRotationMatrix2D((photo.shape[1] / 2, photo.shape[0] / 2), angle, 1.0)
    turned = cv2.warpAffine(photo, turn, photo.shape[::-1])
    boxes, scores = served._rescue([turned], [(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32))])[0]
    assert len(boxes) == 1 and scores[0] >= served.rescue_threshold
    expected = turn @ np.array([(upright[0] + upright[2]) / 2, (upright[1] + upright[3]) / 2, 1.0])
    side = upright[2] - upright[0]
    assert np.abs(np.array([(boxes[0][0] + boxes[0][2]) / 2, (boxes[0][1] + boxes[0][3]) / 2]) - expected).max() < 0.1 * side


@pytest.mark.parametrize("name", ["coffee.png", "chelsea.png", "rocket.jpg", "brick.png", "text.png", "blank"])
def test_photos_without_a_face_still_get_none(sessions, name):
    if name == "blank":
        image = np.full((480, 640), 170, np.uint8)
    else:
        path = Path(list(importlib.util.find_spec("skimage").submodule_search_locations)[0]) / "data" / name
        image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    assert len(pipeline(sessions).detect_many([image])[0][0]) == 0
