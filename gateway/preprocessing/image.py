"""Image bytes → what the face models get, the one way both training and serving compute it.

The FER2013 images the face model learns from are 48×48 8-bit grayscale crops of a face. The gateway:

1. ``decode_image``: JPEG / PNG / WebP bytes → an 8-bit grayscale array, EXIF orientation applied. Everything a
   client can get wrong is an ``EmotuneError`` (a 4xx): empty, not an image, another format, truncated or corrupt,
   too many bytes, too many pixels (decompression bombs are refused from the header, before any pixel is decoded),
   a side over ``MAX_SIDE`` or sides more than ``MAX_ASPECT`` apart (a 40000×1000 strip, a 39,000,000×1 line), and
   the decoded array is checked against the same bounds. A JPEG is decoded straight at a reduced scale when only a
   smaller image is needed (libjpeg's DCT scaling), so a large photo costs a fraction of its full decode.
2. ``detect=true`` (``prepare_photo``): the upright photo with its long side at most ``DETECT_MAX_SIDE`` (a JPEG
   decoded at reduced scale down to ``DETECT_DRAFT_SIDE``) goes once
   to Triton's ``face_pipeline`` (detection, crops and ``face_emotion`` run there); its boxes come back in the sent
   pixels and ``Photo.boxes`` maps them onto the upright original. No face is ``InvalidInput("no_face")`` (422).
3. ``detect=false`` (``prepare_faces``): the image is an aligned face crop (like the FER2013 files): shrunk to
   48 px on its long side first, then edge-padded to a square, so no shape makes the pad large.
4. ``normalize``: uint8 → float32 ``(x / 255 - MEAN) / STD``, shape ``[N, 1, 48, 48]``. Training calls this same
   function on the same decoded pixels (``tests/training/test_face_training.py::test_training_reads_fer_through_the_gateway_path`` checks it).
"""

from __future__ import annotations

import io
import warnings
from dataclasses import asdict, dataclass

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from gateway.errors import BadRequest, EmotuneError, InvalidInput, TooLarge, UnsupportedMedia

SIZE = 48
MEAN = 0.5
STD = 0.5
FACE_MARGIN = 0.1  # written to face_emotion's model.json by export/face.py; face_pipeline's crop margin is in its own config
FORMATS = {"JPEG": "JPEG", "MPO": "JPEG", "PNG": "PNG", "WEBP": "WebP"}  # MPO: multi-picture JPEG from cameras
MIN_SIDE = 1
MAX_SIDE = 20_000  # a side beyond this is refused whatever the pixel count
MAX_ASPECT = 20  # long side / short side: panoramas pass, strips and lines (the #23 probe's shapes) do not
# face_pipeline's views are fractions of the long side (the finest, 5×5 tiles, are 0.3 of it) resized to 128 px, so
# more pixels than this find nothing more and cost the decode, the gRPC copy and the resizes. A JPEG decodes at the
# DCT scale that keeps at least DETECT_DRAFT_SIDE (a 1200×810 photo at half size: the gateway's largest CPU cost).
DETECT_MAX_SIDE = 1280
DETECT_DRAFT_SIDE = 600
ORIENTATION = 0x0112
_TRANSPOSING = {5, 6, 7, 8}  # EXIF orientations that swap width and height


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
    """What ``detect=false`` sends to the face model: the whole image as one face."""

    inputs: np.ndarray  # float32 [1, 1, SIZE, SIZE]
    boxes: list[Box]
    width: int
    height: int
    detected: bool


@dataclass(frozen=True)
class Photo:
    """What ``detect=true`` sends to ``face_pipeline``: gray pixels, long side at most ``DETECT_MAX_SIDE``, and the
    upright original's size (the answer's ``width``/``height`` and the frame its boxes are in)."""

    pixels: np.ndarray  # uint8 [h, w]
    width: int
    height: int

    def boxes(self, xywh: np.ndarray) -> list[Box]:
        """``face_pipeline``'s boxes (x, y, width, height in ``pixels``) on the original, clipped to it."""
        sx, sy = self.width / self.pixels.shape[1], self.height / self.pixels.shape[0]
        out = []
        for x, y, w, h in np.asarray(xywh, dtype=np.float64).reshape(-1, 4):
            x0, y0 = min(self.width - 1, max(0, round(x * sx))), min(self.height - 1, max(0, round(y * sy)))
            x1, y1 = min(self.width, max(x0 + 1, round((x + w) * sx))), min(self.height, max(y0 + 1, round((y + h) * sy)))
            out.append(Box(int(x0), int(y0), int(x1 - x0), int(y1 - y0)))
        return out


def check_dimensions(width: int, height: int, max_pixels: int) -> None:
    """Every shape that could make later work unbounded is refused here, from the header and again after decoding."""
    if width < MIN_SIDE or height < MIN_SIDE:
        raise InvalidInput("invalid_dimensions", f"the image is {width}×{height}")
    if width * height > max_pixels:
        raise TooLarge("image_too_large", f"the image is {width}×{height} = {width * height} pixels; the limit is {max_pixels}")
    if max(width, height) > MAX_SIDE:
        raise TooLarge("image_too_large", f"the image is {width}×{height}; no side may exceed {MAX_SIDE} pixels")
    if max(width, height) > MAX_ASPECT * min(width, height):
        raise InvalidInput("invalid_dimensions", f"the image is {width}×{height}; its sides may differ at most {MAX_ASPECT}-fold")


def decode_image(data: bytes, max_pixels: int, max_bytes: int | None = None, draft_side: int | None = None) -> np.ndarray:
    """JPEG/PNG/WebP bytes → uint8 grayscale ``[H, W]``, upright per EXIF; a 4xx ``EmotuneError`` for anything else.
    ``draft_side``: a long side of that many pixels is enough, so a JPEG may decode at 1/2, 1/4 or 1/8 scale (the
    smallest that keeps at least ``draft_side``); other formats decode in full."""
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
    check_dimensions(width, height, max_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if draft_side is not None and FORMATS[image.format] == "JPEG" and max(width, height) >= 2 * draft_side:
                scale = draft_side / max(width, height)
                image.draft("L", (max(1, int(np.ceil(width * scale))), max(1, int(np.ceil(height * scale)))))
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
    if gray.ndim != 2:
        raise InvalidInput("corrupt_image", f"the image decoded to an array of shape {gray.shape}")
    check_dimensions(gray.shape[1], gray.shape[0], max_pixels)
    return np.ascontiguousarray(gray)


def upright_size(data: bytes) -> tuple[int, int]:
    """(width, height) after EXIF rotation, from the header alone (``decode_image`` has validated the bytes)."""
    image = Image.open(io.BytesIO(data))
    width, height = image.size
    try:
        orientation = image.getexif().get(ORIENTATION, 1)
    except Exception:  # an unreadable EXIF block: exif_transpose ignored it too
        orientation = 1
    return (height, width) if orientation in _TRANSPOSING else (width, height)


def load_image_file(path, max_pixels: int = 40_000_000) -> np.ndarray:
    """A file on disk through ``decode_image`` (what training reads FER2013 with)."""
    with open(path, "rb") as f:
        return decode_image(f.read(), max_pixels)


def fit(gray: np.ndarray, max_side: int) -> np.ndarray:
    """``gray`` shrunk (area-averaged) so its long side is at most ``max_side``."""
    height, width = gray.shape
    scale = max_side / max(height, width)
    if scale >= 1:
        return gray
    return cv2.resize(gray, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA)


def prepare_photo(
    data: bytes, max_pixels: int = 40_000_000, max_bytes: int | None = None, max_side: int = DETECT_MAX_SIDE, draft_side: int = DETECT_DRAFT_SIDE
) -> Photo:
    """Bytes → the bounded upright photo ``face_pipeline`` gets, or a 4xx ``EmotuneError``."""
    gray = decode_image(data, max_pixels, max_bytes, draft_side=draft_side)
    width, height = upright_size(data)
    return Photo(np.ascontiguousarray(fit(gray, max_side)), width, height)


def whole_image(gray: np.ndarray, size: int = SIZE) -> np.ndarray:
    """An already aligned face crop (``detect=false``): its long side resized to ``size``, then edge-padded to a
    ``size``×``size`` square around its centre. Shrinking first keeps the work to the image's own pixels whatever
    its shape (padding a 40000×1000 strip to a square first would be 1.6 billion pixels)."""
    height, width = gray.shape
    if (height, width) == (size, size):
        return gray
    scale = size / max(height, width)
    new_w, new_h = min(size, max(1, round(width * scale))), min(size, max(1, round(height * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    small = cv2.resize(gray, (new_w, new_h), interpolation=interpolation)
    top, left = (size - new_h) // 2, (size - new_w) // 2
    square = cv2.copyMakeBorder(small, top, size - new_h - top, left, size - new_w - left, cv2.BORDER_REPLICATE)
    return np.ascontiguousarray(square)


def normalize(crops: np.ndarray, mean: float = MEAN, std: float = STD) -> np.ndarray:
    """uint8 ``[N, H, W]`` (or one ``[H, W]``) → float32 ``[N, 1, H, W]`` scaled like training."""
    crops = np.asarray(crops, dtype=np.uint8)
    if crops.ndim == 2:
        crops = crops[None]
    return ((crops.astype(np.float32) / 255.0 - mean) / std)[:, None, :, :]


def prepare_faces(
    data: bytes,
    detect: bool = False,
    max_faces: int = 16,
    max_pixels: int = 40_000_000,
    max_bytes: int | None = None,
    preprocessing: dict | None = None,
) -> FaceInputs:
    """``detect=false``: bytes → the face model's input for the whole image (an aligned face crop), or a 4xx.

    ``preprocessing`` is the ``model.json`` block the export writes (size, mean, std); defaults match training.
    Detection is not done here: ``detect=true`` photos go to ``face_pipeline`` (``prepare_photo``).
    """
    if detect:
        raise ValueError("faces are detected in Triton's face_pipeline: use prepare_photo")
    params = preprocessing or {}
    size = int(params.get("size", SIZE))
    mean, std = float(params.get("mean", MEAN)), float(params.get("std", STD))
    gray = decode_image(data, max_pixels, max_bytes, draft_side=2 * size)
    width, height = upright_size(data)
    return FaceInputs(normalize(whole_image(gray, size), mean, std), [Box(0, 0, width, height)], width, height, False)
