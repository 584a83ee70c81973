"""A real Chromium (Debian's chromium + chromium-driver) driven by selenium, with fake media devices fed from files:
the camera shows a face photo (a .y4m made here), the microphone plays a RAVDESS clip (a .wav made here)."""

from __future__ import annotations

import base64
import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FACE_PHOTO = "samples/surprised.jpg"
VOICE_CLIP = "ravdess/Actor_01/03-01-05-02-01-01-01.flac"  # angry, strong intensity
# Set to a folder (e.g. docs) to also write the main screenshots there under their docs names.
SCREENSHOT_DIR = os.environ.get("EMOTUNE_PAGE_SCREENSHOTS")


COUNT_MEDIA_REQUESTS = """
window.__mediaRequests = [];
const __getUserMedia = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
navigator.mediaDevices.getUserMedia = (constraints) => {
  window.__mediaRequests.push(Object.keys(constraints).join("+"));
  return __getUserMedia(constraints);
};
"""


def _require_browser() -> None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.skip(f"browser tests need Debian's chromium and chromium-driver (apt-get install chromium chromium-driver); missing {missing}")
    pytest.importorskip("selenium", reason="browser tests need selenium (the [test] extra)")


def write_y4m(photo: Path, out: Path, width: int = 640, frames: int = 2) -> Path:
    """A YUV 4:2:0 (JPEG range) video of ``frames`` copies of ``photo``: what Chromium's fake camera plays in a loop."""
    from PIL import Image

    image = Image.open(photo).convert("RGB")
    height = round(image.height * width / image.width / 2) * 2
    y, u, v = image.resize((width, height), Image.Resampling.LANCZOS).convert("YCbCr").split()
    half = (width // 2, height // 2)
    frame = b"FRAME\n" + y.tobytes() + u.resize(half, Image.Resampling.BILINEAR).tobytes() + v.resize(half, Image.Resampling.BILINEAR).tobytes()
    out.write_bytes(f"YUV4MPEG2 W{width} H{height} F15:1 Ip A1:1 C420jpeg\n".encode() + frame * frames)
    return out


def write_wav(clip: Path, out: Path) -> Path:
    """The clip as 16-bit PCM WAV at 48 kHz (what Chromium's fake microphone reads), with a little silence after it."""
    import soundfile as sf
    from scipy.signal import resample_poly

    audio, rate = sf.read(clip, dtype="float32", always_2d=True)
    mono = audio.mean(axis=1)
    if rate != 48000:
        mono = resample_poly(mono, 48000, rate).astype(np.float32)
    sf.write(out, np.concatenate([mono, np.zeros(24000, np.float32)]), 48000, subtype="PCM_16")
    return out


@pytest.fixture(scope="session")
def fake_media(shared_data: Path, tmp_path_factory) -> dict[str, Path]:
    _require_browser()
    folder = tmp_path_factory.mktemp("fake_media")
    return {"video": write_y4m(shared_data / FACE_PHOTO, folder / "face.y4m"), "audio": write_wav(shared_data / VOICE_CLIP, folder / "voice.wav")}


def chromium_options(fake_media: dict[str, Path], profile: Path, width: int = 1280, height: int = 1000):
    from selenium.webdriver.chrome.options import Options

    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        f"--window-size={width},{height}",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-video-capture={fake_media['video']}",
        f"--use-file-for-fake-audio-capture={fake_media['audio']}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return options


@pytest.fixture
def make_browser(fake_media, tmp_path):
    """``make_browser(width=1280, height=1000)`` → a fresh Chromium (own profile); all are quit after the test."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    drivers = []

    def make(width: int = 1280, height: int = 1000):
        profile = tmp_path / f"profile{len(drivers)}"
        driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=chromium_options(fake_media, profile, width, height))
        driver.set_page_load_timeout(30)
        # Count the page's requests for a microphone or camera, so a test can check none happens before a click.
        driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": COUNT_MEDIA_REQUESTS})
        drivers.append(driver)
        return driver

    yield make
    for driver in drivers:
        driver.quit()


@pytest.fixture
def screenshot(tmp_path):
    """``screenshot(driver, name, docs_name=None, full=True)``: the whole page (or the window) as a PNG in the test's tmp
    dir (and in $EMOTUNE_PAGE_SCREENSHOTS/<docs_name> when set), palette-reduced so it stays small."""
    from PIL import Image

    def take(driver, name: str, docs_name: str | None = None, full: bool = True) -> Path:
        shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": full})
        image = Image.open(io.BytesIO(base64.b64decode(shot["data"]))).convert("RGB")
        path = tmp_path / f"{name}.png"
        image.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
        if SCREENSHOT_DIR and docs_name:
            Path(SCREENSHOT_DIR).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, Path(SCREENSHOT_DIR) / docs_name)
        return path

    return take
