"""POST /speech_emotion through the real gateway process and the real tritonserver over gRPC: real RAVDESS
uploads, generated audio in every accepted format, long clips with a timeline, and each bad input."""

from __future__ import annotations

import concurrent.futures
import json
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest
import soundfile as sf

from gateway.model_info import load_models
from gateway.postprocessing import clip_answer
from gateway.preprocessing.audio import FeatureStats, SpeechFeatureConfig, prepare_speech, prepare_speech_samples
from gateway.services.emotion import SpeechPreprocessing
from tests.conftest import REPOSITORY
from tests.gateway.test_speech_audio import (
    RAVDESS_ANGRY,
    RAVDESS_CALM,
    SR,
    all_formats,
    bad_inputs,
    encode_soundfile,
    espeak_wav,
    synthetic_speech,
)

MODEL_DIR = REPOSITORY / "speech_emotion"
LABELS = ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust"]

pytestmark = pytest.mark.skipif(not (MODEL_DIR / "config.pbtxt").exists(), reason="speech_emotion is not exported")


def post_audio(client: httpx.Client, data: bytes, name: str = "speech.wav") -> httpx.Response:
    return client.post("/speech_emotion", files={"file": (name, data, "application/octet-stream")})


def check_answer(body: dict) -> None:
    assert set(body["scores"]) == set(LABELS)
    assert body["emotion"] in LABELS
    assert abs(sum(body["scores"].values()) - 1) < 2e-3
    assert body["confidence"] == max(body["scores"].values()) == body["scores"][body["emotion"]]


def test_ravdess_flac_upload_as_in_the_original_curl(client: httpx.Client, shared_data):
    path = shared_data / "ravdess" / RAVDESS_ANGRY
    with open(path, "rb") as f:  # curl -F "file=@...flac"
        r = client.post("/speech_emotion", files={"file": (path.name, f, "audio/flac")})
    assert r.status_code == 200, r.text
    body = r.json()
    check_answer(body)
    assert abs(body["duration"] - sf.info(path).duration) < 0.01
    assert "timeline" not in body  # about 2 s of speech once trimmed: one window


def test_answer_equals_the_model_run_on_the_shared_preprocessing(client: httpx.Client, shared_data):
    """The service's scores are the ONNX model's output on the windows the shared module cuts (samples for a graph
    with the log-mel front end, features otherwise)."""
    data = (shared_data / "ravdess" / RAVDESS_CALM).read_bytes()
    info = load_models(REPOSITORY, ["speech_emotion"])["speech_emotion"]
    preprocessing = SpeechPreprocessing.of(info)
    speech = preprocessing.prepare(data)
    feeds = {preprocessing.input_name: speech.windows, "lengths": speech.lengths}
    session = ort.InferenceSession(str(MODEL_DIR / "1" / "model.onnx"))
    raw = session.run(None, {i.name: feeds[i.name] for i in session.get_inputs()})[0]
    expected = clip_answer(raw, info.temperature, info.calibration_level, info.window_exponent)  # as model.json's calibration says
    body = post_audio(client, data, "calm.flac").json()
    assert [body["scores"][k] for k in LABELS] == pytest.approx(expected.tolist(), abs=1e-3)


def test_the_served_front_end_computes_the_training_features(shared_data):
    """The log-mel front end inside the served graph gives the features training computed with ``whisper_log_mel``
    (a clip of one window; a longer clip differs only where the per-window floor binds: export.speech_front_end)."""
    meta = json.loads((MODEL_DIR / "model.json").read_text())
    if meta["preprocessing"].get("input") != "audio":
        pytest.skip("the served speech graph takes features")
    from export.speech_front_end import export_front_end

    config = SpeechFeatureConfig.from_dict(meta["preprocessing"]["features"])
    stats = FeatureStats.from_json(MODEL_DIR / meta["preprocessing"]["feature_stats"])
    front_end = ort.InferenceSession(str(export_front_end(config, stats, Path(tempfile.mkdtemp()) / "front_end.onnx")))
    for name in (RAVDESS_CALM, RAVDESS_ANGRY):
        data = (shared_data / "ravdess" / name).read_bytes()
        samples = prepare_speech_samples(data, config)
        features = front_end.run(["features"], {"audio": samples.windows, "lengths": samples.lengths})[0]
        np.testing.assert_allclose(features, prepare_speech(data, config, stats).windows, atol=1e-3)


@pytest.mark.parametrize("fmt", ["wav", "flac", "mp3", "ogg_vorbis", "ogg_opus", "m4a_aac", "mp4_aac", "webm_opus"])
def test_every_accepted_format_answers(client: httpx.Client, shared_data, fmt):
    clip, _ = sf.read(shared_data / "ravdess" / RAVDESS_ANGRY, dtype="float32")
    r = post_audio(client, all_formats(clip, SR)[fmt], f"speech.{fmt.split('_')[0]}")
    assert r.status_code == 200, r.text
    check_answer(r.json())


def test_lossless_reencoding_gives_the_same_answer(client: httpx.Client, shared_data):
    path = shared_data / "ravdess" / RAVDESS_ANGRY
    clip, _ = sf.read(path, dtype="int16")
    flac = post_audio(client, path.read_bytes(), "a.flac").json()
    wav = post_audio(client, encode_soundfile(clip, SR, "WAV", "PCM_16"), "a.wav").json()
    assert wav["scores"] == flac["scores"]


def test_generated_speech_answers(client: httpx.Client):
    r = post_audio(client, encode_soundfile(synthetic_speech(), SR, "WAV", "PCM_16"))
    assert r.status_code == 200, r.text
    check_answer(r.json())
    spoken = espeak_wav("I can not believe you did this to me, I am so angry right now")
    if spoken is None:
        pytest.skip("espeak-ng is not installed")
    r = post_audio(client, spoken, "espeak.wav")
    assert r.status_code == 200, r.text
    check_answer(r.json())


def test_long_clip_has_a_timeline_and_runs_as_one_batch(client: httpx.Client, shared_data, triton):
    clips = [sf.read(shared_data / "ravdess" / name, dtype="float32")[0] for name in (RAVDESS_ANGRY, RAVDESS_CALM)] * 3
    r = post_audio(client, encode_soundfile(np.concatenate(clips), SR, "FLAC"), "long.flac")
    assert r.status_code == 200, r.text
    body = r.json()
    check_answer(body)
    timeline = body["timeline"]
    assert len(timeline) >= 5
    for window in timeline:
        assert window["emotion"] in LABELS and window["start"] < window["end"] <= body["duration"] + 1e-3
    assert [w["start"] for w in timeline] == sorted(w["start"] for w in timeline)
    info = load_models(REPOSITORY, ["speech_emotion"])["speech_emotion"]
    calibrated = np.clip([[w["scores"][k] for k in LABELS] for w in timeline], 5e-5, None)  # each window: softmax(log p_w / T)
    raw = calibrated**info.temperature / (calibrated**info.temperature).sum(1, keepdims=True)  # undone: the model's p_w
    pooled = clip_answer(raw, info.temperature, info.calibration_level, info.window_exponent)
    assert [body["scores"][k] for k in LABELS] == pytest.approx(pooled.tolist(), abs=2e-3)
    largest, deadline = 0, time.monotonic() + 5  # Triton records an execution's statistics after it has sent the responses
    while largest < len(timeline) and time.monotonic() < deadline:
        stats = httpx.get(f"{triton.http_url}/v2/models/speech_emotion/stats").json()["model_stats"][0]
        largest = max(int(b["batch_size"]) for b in stats["batch_stats"])
        time.sleep(0.05)
    assert largest >= len(timeline), stats["batch_stats"]


def test_strong_clips_are_recognised_well_above_chance_through_the_service(client: httpx.Client, shared_data):
    """Strong-intensity clips of actors 17–20 through the whole service. The served model trained on all 20 actors,
    so this checks the serving path end to end; its accuracy on unseen speakers is the report's cross-validation."""
    names = [p for actor in (17, 18, 19, 20) for p in sorted((shared_data / "ravdess" / f"Actor_{actor}").glob("03-01-0[2-7]-02-01-01-*.flac"))]
    names += sorted((shared_data / "ravdess").glob("Actor_1[7-9]/03-01-01-01-01-01-*.flac"))
    codes = {1: "neutral", 2: "calm", 3: "happy", 4: "sad", 5: "angry", 6: "fearful", 7: "disgust"}
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda p: post_audio(client, p.read_bytes(), p.name).json()["emotion"], names))
    truth = [codes[int(p.name.split("-")[2])] for p in names]
    accuracy = np.mean([a == t for a, t in zip(answers, truth)])
    assert accuracy >= 0.4, list(zip(truth, answers))  # chance is 1/7


@pytest.mark.parametrize("name", list(bad_inputs(synthetic_speech()).keys()))
def test_bad_audio_is_a_clear_4xx(client: httpx.Client, name):
    data, status, code = bad_inputs(synthetic_speech())[name]
    r = post_audio(client, data, "upload.bin")
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error"] == code and body["message"]


def test_upload_over_the_size_limit_is_413(client: httpx.Client):
    r = post_audio(client, b"\0" * (20 * 1024 * 1024 + 1), "big.wav")
    assert r.status_code == 413, r.text
    assert r.json()["error"] == "file_too_large"


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"files": {"audio": ("a.wav", b"RIFF")}}, 422, "invalid_request"),  # wrong field name
        ({"data": {"file": "not a file"}, "files": {"other": ("x", b"1")}}, 422, "invalid_request"),
        ({"json": {"file": "speech.wav"}}, 415, "unsupported_media_type"),
        ({"content": b"RIFF....WAVE", "headers": {"content-type": "audio/wav"}}, 415, "unsupported_media_type"),
    ],
)
def test_malformed_requests(client: httpx.Client, kwargs, status, code):
    r = client.post("/speech_emotion", **kwargs)
    assert r.status_code == status, r.text
    assert r.json()["error"] == code


def test_local_backend_gives_the_same_answer_as_triton(client: httpx.Client, local_gateway_url: str, shared_data):
    data = (shared_data / "ravdess" / RAVDESS_CALM).read_bytes()
    via_triton = post_audio(client, data, "calm.flac").json()
    via_local = httpx.post(f"{local_gateway_url}/speech_emotion", files={"file": ("calm.flac", data)}, timeout=30).json()
    assert via_local["emotion"] == via_triton["emotion"]
    assert [via_local["scores"][k] for k in LABELS] == pytest.approx([via_triton["scores"][k] for k in LABELS], abs=1e-3)


def test_readiness_and_openapi_list_speech(client: httpx.Client):
    assert client.get("/readyz").json()["models"]["speech_emotion"] is True
    assert "/speech_emotion" in client.get("/openapi.json").json()["paths"]
