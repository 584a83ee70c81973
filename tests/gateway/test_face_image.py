"""gateway.preprocessing.image on real and generated images: formats, EXIF orientation, every bad input, face
detection with zero, one and two faces, crops and the model input."""

from __future__ import annotations

import importlib.util
import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gateway.errors import EmotuneError
from gateway.preprocessing.image import (
    MEAN,
    SIZE,
    STD,
    Box,
    FaceDetector,
    crop_face,
    decode_image,
    normalize,
    prepare_faces,
    whole_image,
)

MAX_PIXELS = 40_000_000


def skimage_image(name: str) -> Path:
    """scikit-image's sample pictures, read as files (the test extra installs the package; no import needed)."""
    spec = importlib.util.find_spec("skimage")
    if spec is None:
        pytest.skip("scikit-image is not installed (pip install -e '.[test]')")
    return Path(list(spec.submodule_search_locations)[0]) / "data" / name


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def gray_pattern(width: int = 64, height: int = 40) -> Image.Image:
    y, x = np.mgrid[0:height, 0:width]
    return Image.fromarray(((x * 3 + y * 5) % 256).astype(np.uint8), "L")


def reason(exc: pytest.ExceptionInfo) -> tuple[str, int]:
    return exc.value.code, exc.value.status


# ---------------------------------------------------------------- decoding
@pytest.mark.parametrize("fmt,kwargs", [("PNG", {}), ("WEBP", {"lossless": True})])
def test_lossless_formats_decode_to_the_same_pixels(fmt, kwargs):
    image = gray_pattern()
    assert np.array_equal(decode_image(encode(image, fmt, **kwargs), MAX_PIXELS), np.asarray(image))


def test_jpeg_and_rgb_decode_to_grayscale():
    rgb = Image.merge("RGB", [gray_pattern()] * 3)
    gray = decode_image(encode(rgb, "JPEG", quality=95), MAX_PIXELS)
    assert gray.dtype == np.uint8 and gray.shape == (40, 64)
    assert np.abs(gray.astype(int) - np.asarray(gray_pattern(), dtype=int)).mean() < 4


def test_exif_orientation_is_applied():
    image = Image.new("L", (60, 30), 0)
    image.paste(255, (0, 0, 10, 10))  # a white mark top-left
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    gray = decode_image(encode(image, "JPEG", exif=exif.tobytes(), quality=95), MAX_PIXELS)
    assert gray.shape == (60, 30)  # upright: portrait
    assert gray[:10, -10:].mean() > 200  # the mark is now top-right


def test_transparent_png_is_composited_on_white():
    rgba = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    assert decode_image(encode(rgba, "PNG"), MAX_PIXELS).min() == 255


# ---------------------------------------------------------------- bad input
def test_empty_file():
    with pytest.raises(EmotuneError) as exc:
        decode_image(b"", MAX_PIXELS)
    assert reason(exc) == ("empty_file", 400)


@pytest.mark.parametrize("data", [b"hello, this is text, not an image", b"%PDF-1.4\n" + b"0" * 200, bytes(range(256)) * 4])
def test_not_an_image(data):
    with pytest.raises(EmotuneError) as exc:
        decode_image(data, MAX_PIXELS)
    assert reason(exc) == ("not_an_image", 415)


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "TIFF"])
def test_other_image_formats_are_refused(fmt):
    with pytest.raises(EmotuneError) as exc:
        decode_image(encode(Image.merge("RGB", [gray_pattern()] * 3), fmt), MAX_PIXELS)
    assert reason(exc) == ("unsupported_image_format", 415)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_truncated_image(fmt):
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (200, 200), dtype=np.uint8), "L")
    data = encode(noise, fmt)
    with pytest.raises(EmotuneError) as exc:
        decode_image(data[: len(data) // 2], MAX_PIXELS)
    assert exc.value.status == 422 and exc.value.code == "corrupt_image"


def png_bomb(width: int, height: int) -> bytes:
    """A valid 1-bit PNG of ``width``×``height`` zeros: a few KB that would decode to width×height pixels."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    row = b"\x00" + b"\x00" * ((width + 7) // 8)
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.mark.parametrize("side", [8_000, 30_000])  # under and over PIL's own bomb threshold (179 Mpx)
def test_decompression_bomb_is_refused_from_the_header(side):
    data = png_bomb(side, side)
    assert len(data) < 200_000
    with pytest.raises(EmotuneError) as exc:
        decode_image(data, MAX_PIXELS)
    assert reason(exc) == ("image_too_large", 413)


def test_absurd_dimensions_within_the_pixel_limit_still_decode_or_refuse_cleanly():
    data = png_bomb(100_000, 2)  # 200,000 pixels: allowed, a strip with no face
    assert decode_image(data, MAX_PIXELS).shape == (2, 100_000)
    with pytest.raises(EmotuneError) as exc:
        prepare_faces(data, detect=True)
    assert reason(exc) == ("no_face", 422)


def test_over_the_byte_limit():
    data = encode(gray_pattern(), "PNG")
    with pytest.raises(EmotuneError) as exc:
        decode_image(data, MAX_PIXELS, max_bytes=len(data) - 1)
    assert reason(exc) == ("file_too_large", 413)


# ---------------------------------------------------------------- faces
@pytest.fixture(scope="module")
def astronaut() -> bytes:
    return skimage_image("astronaut.png").read_bytes()


def test_one_face(astronaut):
    faces = prepare_faces(astronaut)
    assert faces.detected and len(faces.boxes) == 1
    box = faces.boxes[0]
    assert 140 < box.x + box.width / 2 < 260 and 60 < box.y + box.height / 2 < 160  # Eileen Collins' face, 512×512 picture
    assert faces.inputs.shape == (1, 1, SIZE, SIZE) and faces.inputs.dtype == np.float32


def two_faces(astronaut: bytes) -> bytes:
    face = Image.open(io.BytesIO(astronaut)).convert("RGB")
    canvas = Image.new("RGB", (1100, 560), (128, 128, 128))
    canvas.paste(face.resize((300, 300)), (20, 130))
    canvas.paste(face, (560, 20))
    return encode(canvas, "JPEG", quality=92)


def test_two_faces_largest_first(astronaut):
    faces = prepare_faces(two_faces(astronaut))
    assert len(faces.boxes) == 2 and faces.inputs.shape[0] == 2
    big, small = faces.boxes
    assert big.area > small.area
    assert big.x > 560 and small.x < 320


@pytest.mark.parametrize("name", ["coffee.png", "chelsea.png"])
def test_no_face_is_an_error_not_a_guess(name):
    with pytest.raises(EmotuneError) as exc:
        prepare_faces(skimage_image(name).read_bytes())
    assert reason(exc) == ("no_face", 422)


def test_no_face_in_a_blank_image():
    with pytest.raises(EmotuneError) as exc:
        prepare_faces(encode(Image.new("RGB", (640, 480), (200, 180, 160)), "JPEG"))
    assert exc.value.code == "no_face"


def test_detect_false_takes_the_whole_image(astronaut):
    faces = prepare_faces(astronaut, detect=False)
    assert not faces.detected and faces.boxes == [Box(0, 0, 512, 512)]
    assert faces.inputs.shape == (1, 1, SIZE, SIZE)


def test_max_faces_keeps_the_largest(astronaut):
    faces = prepare_faces(two_faces(astronaut), max_faces=1)
    assert len(faces.boxes) == 1 and faces.boxes[0].x > 560


def test_sample_photo_face(shared_data):
    faces = prepare_faces((shared_data / "samples" / "surprised.jpg").read_bytes())
    assert (faces.width, faces.height) == (1200, 810)
    assert len(faces.boxes) >= 1
    box = faces.boxes[0]
    assert box.width > 300 and 400 < box.x + box.width / 2 < 800


def test_detector_is_safe_across_threads(astronaut):
    import concurrent.futures

    detector = FaceDetector()
    gray = decode_image(astronaut, MAX_PIXELS)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: detector.detect(gray), range(8)))
    assert all(r == results[0] and len(r) == 1 for r in results)


# ---------------------------------------------------------------- crops and model input
def test_crop_pads_past_the_border():
    gray = np.full((100, 100), 50, np.uint8)
    crop = crop_face(gray, Box(-20, -20, 60, 60))  # partly outside: edge-replicated, still square
    assert crop.shape == (SIZE, SIZE) and (crop == 50).all()


def test_whole_image_keeps_a_48_square_untouched_and_squares_others():
    fer_like = np.random.default_rng(1).integers(0, 256, (SIZE, SIZE), dtype=np.uint8)
    assert whole_image(fer_like) is fer_like
    assert whole_image(np.zeros((30, 90), np.uint8)).shape == (SIZE, SIZE)


def test_normalize():
    x = normalize(np.array([[0, 255], [128, 64]], np.uint8))
    assert x.shape == (1, 1, 2, 2) and x.dtype == np.float32
    assert x[0, 0, 0, 0] == pytest.approx((0 - MEAN) / STD) and x[0, 0, 0, 1] == pytest.approx((1 - MEAN) / STD)


def test_fer_file_through_the_gateway_path_is_its_own_pixels(shared_data):
    path = next((shared_data / "fer2013" / "val" / "happy").glob("*.jpg"))
    faces = prepare_faces(path.read_bytes(), detect=False)
    pixels = np.asarray(Image.open(path).convert("L"))
    assert np.allclose(faces.inputs[0, 0], (pixels / 255.0 - MEAN) / STD, atol=1e-6)
