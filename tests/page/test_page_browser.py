"""The page in a real Chromium against the real gateway and tritonserver: text, the fake microphone, the fake camera
(snapshot and live), all three fused, a photo with no face, and Triton down (503). A screenshot of each state goes
to the test's tmp dir (and to $EMOTUNE_PAGE_SCREENSHOTS, e.g. docs/, when set)."""

from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("selenium", reason="browser tests need selenium (the [test] extra)")
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402

from tests.conftest import REPOSITORY, free_port, start_gateway, stop_gateway

WAIT_S = 90  # first requests on a shared 2-core machine are slow; a passing run takes a few seconds per step
RECORD_S = 4.0
API_KEY = "page-test-key"
HAPPY_TEXT = "I just got the best news of my life and I can't stop smiling, everything is wonderful!"


def _wait(driver, condition, timeout: float = WAIT_S, what: str = ""):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.2).until(condition)
    except TimeoutException:
        errors = [e.text for e in driver.find_elements("css selector", ".error, #server-status") if e.text]
        raise AssertionError(f"timed out waiting for {what}; page says: {errors}") from None


def _text(driver, css: str) -> str:
    found = driver.find_elements("css selector", css)
    return found[0].text if found else ""


def _open(driver, url: str) -> None:
    driver.get(url + "/")
    _wait(driver, lambda d: "Checking" not in _text(d, "#server-status"), what="the readiness check")


def _page_errors(driver) -> list[str]:
    """Console errors the page raised itself; the browser's own "Failed to load resource" lines for the API's 4xx/5xx
    answers (which the page shows as sentences) and for album art it cannot reach are not the page's."""
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE" and "Failed to load resource" not in e["message"]]


def _type_text(driver, text: str = HAPPY_TEXT) -> None:
    box = driver.find_element("id", "text-input")
    box.clear()
    box.send_keys(text)


def _record(driver) -> None:
    driver.find_element("id", "record-start").click()
    _wait(driver, lambda d: d.find_element("id", "record-stop").is_displayed(), 20, "the recorder to start")
    time.sleep(RECORD_S)
    driver.find_element("id", "record-stop").click()


def _start_camera(driver) -> None:
    driver.find_element("id", "camera-start").click()
    _wait(driver, lambda d: d.execute_script("return document.getElementById('camera-video').readyState >= 2"), 20, "the camera")


def test_text_gives_bars_and_tracks(make_browser, gateway_url, screenshot):
    driver = make_browser()
    _open(driver, gateway_url)
    assert "Ready" in _text(driver, "#server-status")
    assert "only to this server" in driver.find_element("id", "privacy").text
    _type_text(driver)
    driver.find_element("id", "text-go").click()
    _wait(driver, lambda d: len(d.find_elements("css selector", "#tracks .track")) > 0, what="tracks")
    assert _text(driver, "#text-result .emotion").lower() == "joy"
    bars = driver.find_elements("css selector", "#text-result .bar")
    assert len(bars) >= 5, "a bar per label"
    first = driver.find_element("css selector", "#tracks .track")
    assert first.find_element("css selector", ".track-name").text
    assert first.find_element("css selector", ".reason").text
    assert first.find_elements("css selector", ".feature-bars li"), "audio features chart"
    assert first.find_element("link text", "Open in Spotify").get_attribute("href").startswith("https://open.spotify.com/track/")
    assert "joy" in _text(driver, "#music-for")
    # Spotify is not configured in the test gateway: the playlist button is off and the page says why.
    assert not driver.find_element("id", "playlist-save").is_enabled()
    assert "not" in _text(driver, "#playlist-note")
    assert driver.find_element("id", "download-m3u").is_enabled()
    m3u = driver.execute_script("return m3u(state.music)")
    assert m3u.startswith("#EXTM3U\n") and m3u.count("#EXTINF:") == len(driver.find_elements("css selector", "#tracks .track"))
    screenshot(driver, "text", "page-text.png")

    driver.find_element("css selector", 'input[name="strategy"][value="uplift"]').click()
    _wait(driver, lambda d: "lifting" in _text(d, "#music-for"), what="the uplift list")
    assert driver.execute_script("return state.music.strategy") == "uplift"  # joy is already up: the list itself may not move
    assert "Uplift" in _text(driver, "#strategy-hint")
    assert _page_errors(driver) == []


def _media_requests(driver) -> list[str]:
    return driver.execute_script("return window.__mediaRequests")


def test_voice_from_the_microphone(make_browser, gateway_url, screenshot):
    driver = make_browser()
    _open(driver, gateway_url)
    time.sleep(0.5)
    assert _media_requests(driver) == [], "no microphone or camera before a click"
    _record(driver)
    assert _media_requests(driver) == ["audio"]
    _wait(driver, lambda d: _text(d, "#voice-result .emotion"), what="the speech emotion")
    assert len(driver.find_elements("css selector", "#voice-result .bar")) >= 7
    assert driver.execute_script("return state.audio.blob.type").startswith("audio/webm")
    assert driver.find_element("id", "audio-playback").is_displayed()
    _wait(driver, lambda d: len(d.find_elements("css selector", "#tracks .track")) > 0, what="tracks for the voice")
    screenshot(driver, "voice", "page-voice.png")
    assert _page_errors(driver) == []


def test_face_snapshot_from_the_camera(make_browser, gateway_url, screenshot):
    driver = make_browser()
    _open(driver, gateway_url)
    assert _media_requests(driver) == []
    _start_camera(driver)
    assert _media_requests(driver) == ["video"]
    driver.find_element("id", "camera-snapshot").click()
    _wait(driver, lambda d: d.find_elements("css selector", "#face-boxes .box"), what="a face box")
    label = _text(driver, "#face-boxes .box-label")
    assert _text(driver, "#face-result .emotion").lower() in label
    box = driver.find_element("css selector", "#face-boxes .box").rect
    image = driver.find_element("id", "face-image").rect
    assert 0 < box["width"] < image["width"] and image["y"] <= box["y"] < image["y"] + image["height"], "the box lies on the photo"
    screenshot(driver, "face", "page-face.png")
    driver.find_element("id", "camera-stop").click()
    assert driver.execute_script("return state.stream") is None
    assert _page_errors(driver) == []


def test_face_live_mode_smooths_and_stops(make_browser, gateway_url, screenshot):
    driver = make_browser()
    _open(driver, gateway_url)
    _start_camera(driver)
    driver.find_element("id", "live-start").click()
    _wait(driver, lambda d: "last 3 frames" in _text(d, "#live-status"), what="three live frames")
    assert driver.find_elements("css selector", "#face-boxes .box"), "the box drawn over the video"
    assert driver.find_element("id", "camera-video").is_displayed()
    screenshot(driver, "live")
    driver.find_element("id", "live-stop").click()
    _wait(driver, lambda d: "stopped" in _text(d, "#live-status"), 20, "live mode to stop")
    assert driver.execute_script("return state.live") is False
    assert driver.find_element("id", "live-start").is_displayed()
    assert _page_errors(driver) == []


def test_all_three_together(make_browser, gateway_url, screenshot):
    driver = make_browser(1280, 1400)
    _open(driver, gateway_url)
    _type_text(driver)
    _record(driver)
    _start_camera(driver)
    driver.find_element("id", "camera-snapshot").click()
    _wait(driver, lambda d: d.execute_script("return state.audio !== null && state.image !== null"), what="a recording and a snapshot")
    _wait(driver, lambda d: d.find_element("id", "together-go").is_enabled(), what="the earlier requests")
    driver.find_element("id", "together-go").click()
    _wait(driver, lambda d: len(d.find_elements("css selector", "#together-result .modalities tbody tr")) == 3, what="the fused answer")
    rows = {r.get_attribute("data-modality"): r.text for r in driver.find_elements("css selector", "#together-result .modalities tbody tr")}
    assert set(rows) == {"text", "speech", "face"}
    assert all("%" in text for text in rows.values()), "each input's own answer and weight"
    assert driver.find_elements("css selector", "#together-result .agreement"), "agreement or disagreement said"
    assert _text(driver, "#together-result .emotion")
    assert "together" in _text(driver, "#music-for")
    assert driver.find_elements("css selector", "#tracks .track")
    screenshot(driver, "together", "page-together.png")
    assert _page_errors(driver) == []


def test_photo_without_a_face_is_a_sentence(make_browser, gateway_url, screenshot, tmp_path):
    from PIL import Image
    from skimage import data

    photo = tmp_path / "coffee.png"
    Image.fromarray(data.coffee()).save(photo)
    driver = make_browser()
    _open(driver, gateway_url)
    driver.find_element("id", "image-file").send_keys(str(photo))
    _wait(driver, lambda d: _text(d, "#face-card .error"), what="the no-face message")
    assert "No face was found" in _text(driver, "#face-card .error")
    screenshot(driver, "no-face")
    assert _page_errors(driver) == []


def test_phone_width_keyboard_and_labels(make_browser, gateway_url, screenshot):
    driver = make_browser()
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True})
    _open(driver, gateway_url)
    assert driver.execute_script("return window.innerWidth") == 390
    # Keyboard only: Tab from the top reaches the text box, then its button; Enter submits.
    focused = lambda: driver.execute_script("return document.activeElement.id")  # noqa: E731
    for _ in range(5):
        ActionChains(driver).send_keys(Keys.TAB).perform()
        if focused() == "text-input":
            break
    assert focused() == "text-input"
    ActionChains(driver).send_keys(HAPPY_TEXT).send_keys(Keys.TAB).perform()
    assert focused() == "text-go"
    ActionChains(driver).send_keys(Keys.ENTER).perform()
    _wait(driver, lambda d: len(d.find_elements("css selector", "#tracks .track")) > 0, what="tracks")
    assert driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth + 1")
    unlabelled = driver.execute_script("""
        return [...document.querySelectorAll('input, textarea, button, audio, video')].filter(e =>
            !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !(e.textContent || '').trim() && e.type !== 'hidden'
        ).map(e => e.id || e.outerHTML.slice(0, 80));""")
    assert unlabelled == [], "every control has a label"
    driver.execute_script("document.getElementById('music-for').scrollIntoView()")
    screenshot(driver, "phone", "page-phone.png", full=False)


@pytest.fixture
def dead_triton_gateway(tmp_path):
    """A gateway pointed at a tritonserver port nothing listens on (the session's Triton stays up)."""
    process, url = start_gateway(
        {
            "EMOTUNE_BACKEND": "triton",
            "EMOTUNE_TRITON_GRPC_PORT": str(free_port()),
            "EMOTUNE_TRITON_TIMEOUT_S": "2",
            "EMOTUNE_MODEL_REPOSITORY": str(REPOSITORY),
        },
        tmp_path / "gateway.log",
    )
    yield url
    stop_gateway(process)


def test_triton_down_shows_the_503_sentence(make_browser, dead_triton_gateway, screenshot):
    driver = make_browser()
    _open(driver, dead_triton_gateway)
    assert "unavailable" in _text(driver, "#server-status")
    _type_text(driver)
    driver.find_element("id", "text-go").click()
    _wait(driver, lambda d: _text(d, "#text-card .error"), 30, "the error sentence")
    message = _text(driver, "#text-card .error")
    assert "unavailable right now (503)" in message
    assert driver.find_element("id", "text-go").is_enabled(), "the page stays usable"
    screenshot(driver, "triton-down", "page-error.png")
    assert _page_errors(driver) == []


@pytest.fixture
def spotify_gateway(triton, tmp_path):
    """A configured deployment: an API key, and Spotify (the local fake) with a user's refresh token: album details,
    previews, playlists."""
    from tests.fakes.spotify_server import FakeSpotify

    with FakeSpotify() as fake:
        process, url = start_gateway(
            {
                "EMOTUNE_BACKEND": "triton",
                "EMOTUNE_TRITON_GRPC_PORT": str(triton.grpc_port),
                "EMOTUNE_MODEL_REPOSITORY": str(REPOSITORY),
                "SPOTIPY_CLIENT_ID": "page-test",
                "SPOTIPY_CLIENT_SECRET": "page-secret",
                "SPOTIPY_REDIRECT_URI": "http://127.0.0.1:9/callback",
                "EMOTUNE_SPOTIFY_REFRESH_TOKEN": "page-refresh",
                "EMOTUNE_SPOTIFY_API_PREFIX": fake.api_prefix,
                "EMOTUNE_SPOTIFY_TOKEN_URL": fake.token_url,
                "EMOTUNE_API_KEYS": f'["{API_KEY}"]',
            },
            tmp_path / "gateway.log",
        )
        try:
            yield url, fake
        finally:
            stop_gateway(process)


def test_api_key_spotify_details_playlist_and_downloads(make_browser, spotify_gateway, screenshot, tmp_path):
    url, fake = spotify_gateway
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    driver = make_browser()
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    _open(driver, url)
    assert driver.find_element("id", "api-key").is_displayed(), "the page asks for the key the server needs"
    _type_text(driver)
    driver.find_element("id", "text-go").click()
    _wait(driver, lambda d: "API key" in _text(d, "#text-card .error"), 30, "the 401 sentence")
    driver.find_element("id", "api-key").send_keys(API_KEY + Keys.ENTER)
    driver.find_element("id", "text-go").click()
    _wait(driver, lambda d: len(d.find_elements("css selector", "#tracks .track")) > 0, what="tracks")
    assert not _text(driver, "#text-card .error")
    first = driver.find_element("css selector", "#tracks .track")
    assert "Album of" in first.find_element("css selector", ".track-meta").text
    preview = first.find_element("css selector", "audio")
    assert preview.get_attribute("src").startswith("https://p.scdn.co/") and "preview" in preview.get_attribute("aria-label")
    assert driver.execute_script("return state.music.tracks[0].image_url").startswith("https://i.scdn.co/")
    assert not driver.find_element("id", "enrichment-note").is_displayed()

    save = driver.find_element("id", "playlist-save")
    assert save.is_enabled()
    save.click()
    _wait(driver, lambda d: "Saved" in _text(d, "#playlist-note"), 30, "the playlist")
    link = driver.find_element("css selector", "#playlist-note a").get_attribute("href")
    assert link.startswith("https://open.spotify.com/playlist/")
    (playlist,) = fake.playlists.values()
    assert len(playlist["items"]) == len(driver.find_elements("css selector", "#tracks .track"))

    driver.find_element("id", "download-m3u").click()
    driver.find_element("id", "download-json").click()
    _wait(driver, lambda d: {p.suffix for p in downloads.iterdir()} >= {".m3u", ".json"}, 15, "the downloads")
    m3u = next(downloads.glob("*.m3u")).read_text()
    assert m3u.startswith("#EXTM3U") and "#EXTINF:200," in m3u  # the fake's duration_ms 200000
    screenshot(driver, "spotify", "page-spotify.png")
    assert _page_errors(driver) == []


def test_uploads_two_faces_and_too_long_audio(make_browser, gateway_url, shared_data, screenshot, tmp_path):
    """Uploaded files take the same paths: every face of a photo gets its box and label; an over-long recording is a
    sentence naming the limit."""
    import soundfile as sf
    from PIL import Image

    face = Image.open(shared_data / "samples" / "surprised.jpg").convert("RGB")
    pair = Image.new("RGB", (face.width * 2, face.height), "white")
    pair.paste(face, (0, 0))
    pair.paste(face.transpose(Image.Transpose.FLIP_LEFT_RIGHT), (face.width, 0))
    pair.save(tmp_path / "two.jpg", quality=90)
    clip, rate = sf.read(shared_data / "ravdess" / "Actor_01" / "03-01-03-02-01-01-01.flac", dtype="float32")
    sf.write(tmp_path / "voice.wav", clip, rate)
    sf.write(tmp_path / "long.wav", np.tile(clip, int(70 * rate / len(clip)) + 1), rate)

    driver = make_browser()
    _open(driver, gateway_url)
    driver.find_element("id", "image-file").send_keys(str(tmp_path / "two.jpg"))
    _wait(driver, lambda d: len(d.find_elements("css selector", "#face-boxes .box")) == 2, what="two face boxes")
    labels = [e.text for e in driver.find_elements("css selector", "#face-boxes .box-label")]
    assert labels[0].startswith("1 · ") and labels[1].startswith("2 · ")
    assert len(driver.find_elements("css selector", "#face-result .faces > li")) == 2
    driver.find_element("id", "audio-file").send_keys(str(tmp_path / "voice.wav"))
    _wait(driver, lambda d: _text(d, "#voice-result .emotion"), what="the uploaded clip's emotion")
    screenshot(driver, "uploads")

    driver.find_element("id", "audio-file").send_keys(str(tmp_path / "long.wav"))
    _wait(driver, lambda d: _text(d, "#voice-card .error"), what="the too-long message")
    assert "too long" in _text(driver, "#voice-card .error") and "60" in _text(driver, "#voice-card .error")
    assert _page_errors(driver) == []
