"""gateway.preprocessing.image on real and generated images: formats, EXIF orientation, every bad input and every
shape bound (the #23 probe's strip and line), the bounded photo face_pipeline gets, the detect=false crop and the
model input. Detection itself runs in Triton (tests/gateway/test_face_emotion.py)."""

from __future__ import annotations

import importlib.util
import io
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gateway.errors import EmotuneError
from gateway.preprocessing.image import (
    DETECT_DRAFT_SIDE,
    DETECT_MAX_SIDE,
    MAX_ASPECT,
    MEAN,
    SIZE,
    STD,
    Box,
    Photo,
    decode_image,
    normalize,
    prepare_faces,
    prepare_photo,
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


@pytest.mark.parametrize(
    ("width", "height"),
    [(40_000, 1_000), (39_000_000, 1), (1, 39_000_000), (100_000, 2)],
    ids=["strip-40000x1000", "line-39000000x1", "column-1x39000000", "strip-100000x2"],
)
@pytest.mark.parametrize("detect", [False, True])
def test_extreme_shapes_are_refused_from_the_header(width, height, detect):
    """The #23 probe: a 4.9 KB 1-bit 40000×1000 PNG padded to 40000² cost 3 GB with detect=false; a 39,000,000×1
    PNG was a 500. Both are refused before any pixel is decoded, with either setting."""
    data = png_bomb(width, height)
    started = time.perf_counter()
    with pytest.raises(EmotuneError) as exc:
        prepare_faces(data) if not detect else prepare_photo(data)
    assert time.perf_counter() - started < 1.0
    assert exc.value.status in (413, 422) and exc.value.code in ("invalid_dimensions", "image_too_large")
    assert "×" in exc.value.message


def test_the_widest_accepted_shape_does_bounded_work():
    """The most elongated image that passes (MAX_ASPECT:1) becomes a 48×48 input without padding at full size."""
    data = png_bomb(MAX_ASPECT * 300, 300)
    faces = prepare_faces(data)
    assert faces.inputs.shape == (1, 1, SIZE, SIZE) and (faces.width, faces.height) == (MAX_ASPECT * 300, 300)
    photo = prepare_photo(data)
    assert max(photo.pixels.shape) == DETECT_MAX_SIDE and photo.pixels.shape[0] >= 1  # a PNG: decoded in full, then shrunk


def test_every_side_over_the_limit_is_refused():
    with pytest.raises(EmotuneError) as exc:
        decode_image(png_bomb(25_000, 2_000), MAX_PIXELS)
    assert reason(exc) == ("image_too_large", 413)


def test_over_the_byte_limit():
    data = encode(gray_pattern(), "PNG")
    with pytest.raises(EmotuneError) as exc:
        decode_image(data, MAX_PIXELS, max_bytes=len(data) - 1)
    assert reason(exc) == ("file_too_large", 413)


# ---------------------------------------------------------------- the photo face_pipeline gets
@pytest.fixture(scope="module")
def astronaut() -> bytes:
    return skimage_image("astronaut.png").read_bytes()


def two_faces(astronaut: bytes) -> bytes:
    face = Image.open(io.BytesIO(astronaut)).convert("RGB")
    canvas = Image.new("RGB", (1100, 560), (128, 128, 128))
    canvas.paste(face.resize((300, 300)), (20, 130))
    canvas.paste(face, (560, 20))
    return encode(canvas, "JPEG", quality=92)


def test_a_small_photo_is_sent_as_it_is(astronaut):
    photo = prepare_photo(astronaut)
    assert photo.pixels.shape == (512, 512) and photo.pixels.dtype == np.uint8 and (photo.width, photo.height) == (512, 512)
    assert np.array_equal(photo.pixels, decode_image(astronaut, MAX_PIXELS))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_a_large_photo_is_bounded_and_its_boxes_map_back(fmt):
    y, x = np.mgrid[0:3000, 0:4000]
    big = Image.fromarray(((x // 7 + y // 5) % 256).astype(np.uint8), "L")
    photo = prepare_photo(encode(big, fmt))
    assert DETECT_DRAFT_SIDE <= max(photo.pixels.shape) <= DETECT_MAX_SIDE and (photo.width, photo.height) == (4000, 3000)
    assert abs(photo.pixels.shape[0] / photo.pixels.shape[1] - 0.75) < 0.01
    scale = photo.pixels.shape[1] / 4000
    (box,) = photo.boxes(np.array([[400, 300, 1000, 1000]]) * scale)
    assert box == Box(400, 300, 1000, 1000)


def test_a_jpeg_decodes_at_reduced_scale_only_down_to_the_draft_side(shared_data):
    photo = prepare_photo((shared_data / "samples" / "surprised.jpg").read_bytes())
    assert photo.pixels.shape == (405, 600) and (photo.width, photo.height) == (1200, 810)


def test_an_exif_rotated_photo_is_sent_upright():
    image = Image.new("L", (3000, 1500), 0)
    image.paste(255, (0, 0, 300, 300))  # a white mark top-left as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed rotated 90° clockwise: portrait, the mark top-right
    photo = prepare_photo(encode(image, "JPEG", exif=exif.tobytes(), quality=95))
    assert (photo.width, photo.height) == (1500, 3000)
    h, w = photo.pixels.shape
    assert h > w and DETECT_DRAFT_SIDE <= max(h, w) <= DETECT_MAX_SIDE and photo.pixels[: h // 20, -w // 20 :].mean() > 200


def test_boxes_are_clipped_to_the_photo():
    photo = Photo(np.zeros((100, 200), np.uint8), 400, 200)
    assert photo.boxes(np.array([[-10, -10, 50, 50], [180, 90, 40, 40]])) == [Box(0, 0, 80, 80), Box(360, 180, 40, 20)]


def test_detection_is_not_done_in_the_gateway(astronaut):
    with pytest.raises(ValueError):
        prepare_faces(astronaut, detect=True)


def test_detect_false_takes_the_whole_image(astronaut):
    faces = prepare_faces(astronaut, detect=False)
    assert not faces.detected and faces.boxes == [Box(0, 0, 512, 512)]
    assert faces.inputs.shape == (1, 1, SIZE, SIZE)


# ---------------------------------------------------------------- crops and model input
def test_whole_image_keeps_a_48_square_untouched_and_squares_others():
    fer_like = np.random.default_rng(1).integers(0, 256, (SIZE, SIZE), dtype=np.uint8)
    assert whole_image(fer_like) is fer_like
    assert whole_image(np.zeros((30, 90), np.uint8)).shape == (SIZE, SIZE)
    strip = np.zeros((40, 800), np.uint8)
    strip[:, 400:] = 200
    square = whole_image(strip)  # shrunk to 48 wide first, then edge-padded: left half dark, right half bright
    assert square.shape == (SIZE, SIZE) and square[:, :20].max() == 0 and square[:, 28:].min() == 200


def test_normalize():
    x = normalize(np.array([[0, 255], [128, 64]], np.uint8))
    assert x.shape == (1, 1, 2, 2) and x.dtype == np.float32
    assert x[0, 0, 0, 0] == pytest.approx((0 - MEAN) / STD) and x[0, 0, 0, 1] == pytest.approx((1 - MEAN) / STD)


def test_fer_file_through_the_gateway_path_is_its_own_pixels(shared_data):
    path = next((shared_data / "fer2013" / "val" / "happy").glob("*.jpg"))
    faces = prepare_faces(path.read_bytes(), detect=False)
    pixels = np.asarray(Image.open(path).convert("L"))
    assert np.allclose(faces.inputs[0, 0], (pixels / 255.0 - MEAN) / STD, atol=1e-6)
