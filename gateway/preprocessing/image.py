"""Image bytes → face crops → the face model's input, the one way both training and serving compute it.

The FER2013 images the model learns from are 48×48 8-bit grayscale crops of a face. Serving reproduces them:

1. ``decode_image``: JPEG / PNG / WebP bytes → an 8-bit grayscale array, EXIF orientation applied. Everything a
   client can get wrong is an ``EmotuneError`` (a 4xx): empty, not an image, another format, truncated or corrupt,
   too many bytes, too many pixels (decompression bombs are refused from the header, before any pixel is decoded).
2. ``FaceDetector``: OpenCV's frontal-face Haar cascade (it ships inside the opencv-python-headless wheel), largest
   face first. No face is ``InvalidInput("no_face")`` (422): the service never guesses on the whole frame.
3. ``crop_face``: the detector's box grown by ``FACE_MARGIN`` (measured: the Haar box covers 83% (median) of a FER2013
   frame) to a square, edge-replicated past the image border, resized to 48×48.
4. ``normalize``: uint8 → float32 ``(x / 255 - MEAN) / STD``, shape ``[N, 1, 48, 48]``. Training calls this same
   function on the same decoded pixels (``tests/training/test_face_training.py::test_training_reads_fer_through_the_gateway_path`` checks it).

``detect=False`` skips 2–3 for clients that send an aligned face crop (like the FER2013 files): the whole image is
squared (edge padding) and resized to 48×48.
"""

from __future__ import annotations

import io
import threading
import warnings
from dataclasses import asdict, dataclass

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from gateway.errors import BadRequest, EmotuneError, InvalidInput, TooLarge, UnsupportedMedia

SIZE = 48
MEAN = 0.5
STD = 0.5
FACE_MARGIN = 0.1  # fraction of the detected box added on every side (the Haar box is ~83% of a FER frame)
FORMATS = {"JPEG": "JPEG", "MPO": "JPEG", "PNG": "PNG", "WEBP": "WebP"}  # MPO: multi-picture JPEG from cameras
MIN_SIDE = 1
# The cascade runs on a copy at most this large (boxes are scaled back): 800 finds as many faces as 1024 with 21% less
# CPU and fewer false positives; 640 misses 1.7 points more (bench/report, "Face detection").
DETECT_MAX_SIDE = 800
CASCADE = "haarcascade_frontalface_default.xml"


@dataclass(frozen=True)
class Box:
    """A face in the decoded (EXIF-rotated) image, in pixels."""

    x: int
    y: int
    width: int
    height: int

    @property
    def area(self) -> int:
        return self.width * self.height

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class FaceInputs:
    """What the route sends to the model: one row per face, largest face first."""

    inputs: np.ndarray  # float32 [N, 1, SIZE, SIZE]
    boxes: list[Box]
    width: int
    height: int
    detected: bool


def decode_image(data: bytes, max_pixels: int, max_bytes: int | None = None) -> np.ndarray:
    """JPEG/PNG/WebP bytes → uint8 grayscale ``[H, W]``, upright per EXIF; a 4xx ``EmotuneError`` for anything else."""
    if not data:
        raise BadRequest("empty_file", "the uploaded file is empty")
    if max_bytes is not None and len(data) > max_bytes:
        raise TooLarge("file_too_large", f"the image is {len(data)} bytes; the limit is {max_bytes}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise TooLarge("image_too_large", f"the image has too many pixels: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise UnsupportedMedia("not_an_image", "the file is not an image PIL can read (send JPEG, PNG or WebP)") from exc
    except Exception as exc:  # a malformed header can raise nearly anything inside a plugin
        raise InvalidInput("corrupt_image", f"the image header cannot be read: {exc}") from exc
    if image.format not in FORMATS:
        raise UnsupportedMedia("unsupported_image_format", f"{image.format} images are not accepted; send JPEG, PNG or WebP")
    width, height = image.size
    if width < MIN_SIDE or height < MIN_SIDE:
        raise InvalidInput("invalid_dimensions", f"the image is {width}×{height}")
    if width * height > max_pixels:
        raise TooLarge("image_too_large", f"the image is {width}×{height} = {width * height} pixels; the limit is {max_pixels}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image.load()  # decodes every pixel: truncated or corrupt data fails here
            image = ImageOps.exif_transpose(image)
        if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
            rgba = image.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            image = Image.alpha_composite(background, rgba)
        gray = np.asarray(image.convert("L"), dtype=np.uint8)
    except EmotuneError:
        raise
    except Exception as exc:
        raise InvalidInput("corrupt_image", f"the image data is truncated or corrupt: {exc}") from exc
    return np.ascontiguousarray(gray)


def load_image_file(path, max_pixels: int = 40_000_000) -> np.ndarray:
    """A file on disk through ``decode_image`` (what training reads FER2013 with)."""
    with open(path, "rb") as f:
        return decode_image(f.read(), max_pixels)


class FaceDetector:
    """OpenCV's frontal-face Haar cascade; one classifier per thread (``CascadeClassifier`` is not thread-safe)."""

    def __init__(self, scale_factor: float = 1.1, min_neighbors: int = 5, min_size_fraction: float = 0.05,
                 max_side: int = DETECT_MAX_SIDE, cascade: str = CASCADE):
        self.path = cv2.data.haarcascades + cascade
        self.scale_factor, self.min_neighbors = scale_factor, min_neighbors
        self.min_size_fraction, self.max_side = min_size_fraction, max_side
        self._local = threading.local()
        if self._classifier().empty():
            raise RuntimeError(f"cannot load the Haar cascade {self.path}")

    def _classifier(self) -> cv2.CascadeClassifier:
        classifier = getattr(self._local, "classifier", None)
        if classifier is None:
            classifier = self._local.classifier = cv2.CascadeClassifier(self.path)
        return classifier

    def detect(self, gray: np.ndarray) -> list[Box]:
        """Faces in ``gray`` (uint8 [H, W]), largest first."""
        height, width = gray.shape
        scale = min(1.0, self.max_side / max(height, width))
        small = gray if scale == 1.0 else cv2.resize(gray, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA)
        small = cv2.equalizeHist(small)
        min_side = max(20, int(self.min_size_fraction * min(small.shape)))
        found = self._classifier().detectMultiScale(small, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
                                                    minSize=(min_side, min_side))
        boxes = [Box(int(round(x / scale)), int(round(y / scale)), int(round(w / scale)), int(round(h / scale))) for x, y, w, h in found]
        return sorted(_drop_nested(boxes), key=lambda b: b.area, reverse=True)


def _drop_nested(boxes: list[Box]) -> list[Box]:
    """Remove a box mostly inside a larger one (the cascade sometimes fires on a face and on part of it)."""
    kept: list[Box] = []
    for box in sorted(boxes, key=lambda b: b.area, reverse=True):
        if all(overlap_area(box, k) < 0.6 * box.area for k in kept):
            kept.append(box)
    return kept


def overlap_area(a: Box, b: Box) -> int:
    w = min(a.x + a.width, b.x + b.width) - max(a.x, b.x)
    h = min(a.y + a.height, b.y + b.height) - max(a.y, b.y)
    return max(0, w) * max(0, h)


def crop_square(gray: np.ndarray, cx: float, cy: float, side: int, size: int = SIZE) -> np.ndarray:
    """The ``side``-pixel square centred on (cx, cy), edge-replicated past the border, resized to ``size``×``size``."""
    side = max(1, int(round(side)))
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    height, width = gray.shape
    pad = max(0, -x0, -y0, x0 + side - width, y0 + side - height)
    if pad:
        gray = cv2.copyMakeBorder(gray, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        x0, y0 = x0 + pad, y0 + pad
    crop = gray[y0 : y0 + side, x0 : x0 + side]
    if crop.shape != (size, size):
        interpolation = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
        crop = cv2.resize(crop, (size, size), interpolation=interpolation)
    return np.ascontiguousarray(crop)


def crop_face(gray: np.ndarray, box: Box, margin: float = FACE_MARGIN, size: int = SIZE) -> np.ndarray:
    side = max(box.width, box.height) * (1 + 2 * margin)
    return crop_square(gray, box.x + box.width / 2, box.y + box.height / 2, side, size)


def whole_image(gray: np.ndarray, size: int = SIZE) -> np.ndarray:
    """An already aligned face crop (``detect=false``): squared around its centre, resized to ``size``×``size``."""
    height, width = gray.shape
    if (height, width) == (size, size):
        return gray
    return crop_square(gray, width / 2, height / 2, max(height, width), size)


def normalize(crops: np.ndarray, mean: float = MEAN, std: float = STD) -> np.ndarray:
    """uint8 ``[N, H, W]`` (or one ``[H, W]``) → float32 ``[N, 1, H, W]`` scaled like training."""
    crops = np.asarray(crops, dtype=np.uint8)
    if crops.ndim == 2:
        crops = crops[None]
    return ((crops.astype(np.float32) / 255.0 - mean) / std)[:, None, :, :]


_DETECTOR: FaceDetector | None = None


def default_detector() -> FaceDetector:
    global _DETECTOR
    if _DETECTOR is None:
        _DETECTOR = FaceDetector()
    return _DETECTOR


def prepare_faces(data: bytes, detect: bool = True, max_faces: int = 16, max_pixels: int = 40_000_000,
                  max_bytes: int | None = None, preprocessing: dict | None = None, detector: FaceDetector | None = None) -> FaceInputs:
    """Bytes → the model's input for every face (largest first, at most ``max_faces``), or ``InvalidInput``.

    ``preprocessing`` is the ``model.json`` block the export writes (size, mean, std, margin); defaults match training.
    """
    params = preprocessing or {}
    size, margin = int(params.get("size", SIZE)), float(params.get("face_margin", FACE_MARGIN))
    mean, std = float(params.get("mean", MEAN)), float(params.get("std", STD))
    gray = decode_image(data, max_pixels, max_bytes)
    height, width = gray.shape
    if not detect:
        return FaceInputs(normalize(whole_image(gray, size), mean, std), [Box(0, 0, width, height)], width, height, False)
    boxes = (detector or default_detector()).detect(gray)[:max_faces]
    if not boxes:
        raise InvalidInput("no_face", "no face was found in the image; send a clearer frontal face, or an aligned face crop with detect=false")
    crops = np.stack([crop_face(gray, box, margin, size) for box in boxes])
    return FaceInputs(normalize(crops, mean, std), boxes, width, height, True)
