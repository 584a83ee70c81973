"""The shared audio path (``gateway.preprocessing.audio``) on real RAVDESS files, generated audio in every
accepted format, and each kind of bad input. No model needed.

The helpers here (encoders, generated speech, bad inputs) are imported by the end-to-end speech tests too.
"""

from __future__ import annotations

import io
import shutil
import struct
import subprocess

import av
import numpy as np
import pytest
import soundfile as sf

from gateway.errors import EmotuneError
from gateway.preprocessing.audio import (
    ERRORS,
    FeatureStats,
    SpeechFeatureConfig,
    decode_audio,
    extract_speech_features,
    prepare_speech,
    speech_windows,
)

SR = 16000
RAVDESS_ANGRY = "Actor_01/03-01-05-02-01-01-01.flac"  # angry, strong intensity, actor 1
RAVDESS_CALM = "Actor_02/03-01-02-01-02-01-02.flac"


# ------------------------------------------------------------------------------------------------ encoders


def encode_soundfile(y: np.ndarray, sr: int, fmt: str, subtype: str | None = None) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, y, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


def encode_av(y: np.ndarray, sr: int, container: str, codec: str, rate: int | None = None) -> bytes:
    """Encode mono float32 samples with FFmpeg (PyAV): AAC in M4A/MP4, Opus in OGG/WebM."""
    buf = io.BytesIO()
    with av.open(buf, "w", format=container) as out:
        stream = out.add_stream(codec, rate=rate or sr)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(np.asarray(y, dtype=np.float32)[None, :], format="flt", layout="mono")
        frame.sample_rate = sr
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def all_formats(y: np.ndarray, sr: int) -> dict[str, bytes]:
    return {
        "wav": encode_soundfile(y, sr, "WAV", "PCM_16"),
        "wav_float": encode_soundfile(y, sr, "WAV", "FLOAT"),
        "flac": encode_soundfile(y, sr, "FLAC"),
        "mp3": encode_soundfile(y, sr, "MP3"),
        "ogg_vorbis": encode_soundfile(y, sr, "OGG", "VORBIS"),
        "ogg_opus": encode_av(y, sr, "ogg", "libopus", rate=48000),
        "m4a_aac": encode_av(y, sr, "ipod", "aac"),
        "mp4_aac": encode_av(y, sr, "mp4", "aac"),
        "webm_opus": encode_av(y, sr, "webm", "libopus", rate=48000),
        "aiff": encode_soundfile(y, sr, "AIFF"),
    }


def synthetic_speech(seconds: float = 2.5, sr: int = SR, seed: int = 0) -> np.ndarray:
    """Voiced syllables: a glottal pulse train with a gliding pitch through two formant resonators, with pauses."""
    from scipy.signal import lfilter

    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    f0 = 140 + 40 * np.sin(2 * np.pi * 0.7 * t)
    phase = np.cumsum(f0 / sr)
    source = (np.diff(np.floor(phase), prepend=0) > 0).astype(np.float64) + 0.02 * rng.standard_normal(n)
    y = source
    for formant, bandwidth in ((700, 110), (1200, 120), (2600, 160)):
        r = np.exp(-np.pi * bandwidth / sr)
        y = lfilter([1 - r], [1, -2 * r * np.cos(2 * np.pi * formant / sr), r * r], y)
    envelope = np.clip(np.sin(2 * np.pi * 2.0 * t), 0, None) ** 0.5  # syllables of ~0.25 s with gaps
    pad = np.zeros(int(0.3 * sr))
    y = np.concatenate([pad, y * envelope, pad])
    return (0.5 * y / np.abs(y).max()).astype(np.float32)


def espeak_wav(text: str) -> bytes | None:
    """Real synthesized speech from espeak-ng when it is installed (``apt-get install espeak-ng``)."""
    exe = shutil.which("espeak-ng")
    if not exe:
        return None
    return subprocess.run([exe, "--stdout", "-s", "150", text], check=True, capture_output=True, timeout=30).stdout


def video_only_mp4() -> bytes:
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for _ in range(5):
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def png_image() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 40, 40)).save(buf, "PNG")
    return buf.getvalue()


def bad_inputs(speech: np.ndarray) -> dict[str, tuple[bytes, int, str]]:
    """name → (bytes, HTTP status, error code), one for each kind of bad input."""
    wav = encode_soundfile(speech, SR, "WAV", "PCM_16")
    flac = encode_soundfile(speech, SR, "FLAC")
    mp3 = encode_soundfile(speech, SR, "MP3")
    m4a = encode_av(speech, SR, "ipod", "aac")
    unknown_codec = bytearray(wav)
    unknown_codec[20:22] = struct.pack("<H", 0x1234)  # a WAVE format tag nothing decodes
    garbage_body = flac[:200] + np.random.default_rng(1).integers(0, 256, len(flac) - 200, dtype=np.uint8).tobytes()
    long_noise = (0.05 * np.random.default_rng(2).standard_normal(61 * SR)).astype(np.float32)
    return {
        "empty": (b"", 400, "empty_file"),
        "text": (b"this is a text file, not audio\n" * 40, 415, "not_audio"),
        "png": (png_image(), 415, "not_audio"),
        "video_only": (video_only_mp4(), 415, "not_audio"),
        "unknown_codec": (bytes(unknown_codec), 415, "unsupported_codec"),
        "truncated_flac": (flac[: len(flac) // 2], 422, "corrupt_audio"),
        "truncated_wav": (wav[: len(wav) // 2], 422, "corrupt_audio"),
        "truncated_mp3": (mp3[: len(mp3) // 2], 422, "corrupt_audio"),
        "truncated_m4a": (m4a[: len(m4a) // 2], 422, "corrupt_audio"),
        "garbage_flac": (garbage_body, 422, "corrupt_audio"),
        "zero_frames": (encode_soundfile(np.zeros(0, np.float32), SR, "WAV"), 422, "empty_audio"),
        "silence": (encode_soundfile(np.zeros(2 * SR, np.float32), SR, "WAV"), 422, "silent_audio"),
        "near_silence": (
            encode_soundfile((1e-4 * np.random.default_rng(3).standard_normal(2 * SR)).astype(np.float32), SR, "WAV", "FLOAT"),
            422,
            "silent_audio",
        ),
        "click": (
            encode_soundfile(np.concatenate([np.zeros(SR), 0.5 * np.hanning(800), np.zeros(SR)]).astype(np.float32), SR, "WAV"),
            422,
            "audio_too_short",
        ),
        "too_long": (encode_soundfile(long_noise, SR, "FLAC"), 413, "audio_too_long"),
    }


# ------------------------------------------------------------------------------------------------ tests


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return synthetic_speech()


@pytest.fixture(scope="module")
def ravdess_bytes(shared_data) -> bytes:
    return (shared_data / "ravdess" / RAVDESS_ANGRY).read_bytes()


def test_ravdess_flac_decodes_exactly_like_soundfile(shared_data, ravdess_bytes):
    path = shared_data / "ravdess" / RAVDESS_ANGRY
    reference, sr = sf.read(path, dtype="float32")
    audio = decode_audio(ravdess_bytes)
    assert sr == audio.sample_rate == SR and audio.format == "FLAC"
    start = round(audio.trim_start_s * SR)
    np.testing.assert_array_equal(audio.samples, reference[start : start + len(audio.samples)])
    assert 0.5 < len(audio.samples) / SR < audio.duration_s  # silence was trimmed


def test_features_have_the_designed_layout(ravdess_bytes):
    config = SpeechFeatureConfig()
    features = extract_speech_features(decode_audio(ravdess_bytes).samples, config)
    assert features.dtype == np.float32 and features.shape[1] == config.dim == 40 + 12 + 7 + 1
    assert config.feature_names[:1] == ["mfcc0"] and config.feature_names[-1] == "zcr"
    assert np.isfinite(features).all()
    assert abs(features.shape[0] - len(decode_audio(ravdess_bytes).samples) / config.hop_length) <= 2


@pytest.mark.parametrize("name", list(all_formats(np.zeros(10, np.float32), SR)))
def test_every_accepted_format_decodes(name, speech):
    data = all_formats(speech, SR)[name]
    audio = decode_audio(data)
    assert audio.sample_rate == SR
    assert abs(audio.duration_s - len(speech) / SR) < 0.15, (name, audio.duration_s)
    features = extract_speech_features(audio.samples)
    assert features.shape[1] == SpeechFeatureConfig().dim and np.isfinite(features).all()


def test_lossless_formats_give_identical_features(speech):
    pcm = np.round(speech * 32767).astype(np.int16)  # the same integer samples in each container
    ref = extract_speech_features(decode_audio(encode_soundfile(pcm, SR, "WAV", "PCM_16")).samples)
    for fmt in ("FLAC", "AIFF"):
        np.testing.assert_array_equal(extract_speech_features(decode_audio(encode_soundfile(pcm, SR, fmt, "PCM_16")).samples), ref)


def test_stereo_and_other_rates_become_16k_mono(speech):
    stereo_44k = np.stack([speech, speech], axis=1)
    audio = decode_audio(encode_soundfile(stereo_44k, 44100, "WAV", "PCM_24"))
    assert audio.samples.ndim == 1 and audio.sample_rate == SR
    assert abs(audio.duration_s - len(speech) / 44100) < 0.01


def test_espeak_speech_decodes():
    data = espeak_wav("I can not believe you did this to me")
    if data is None:
        pytest.skip("espeak-ng is not installed")
    audio = decode_audio(data)
    assert audio.format == "WAV" and len(audio.samples) > SR // 2


@pytest.mark.parametrize("name", list(bad_inputs(synthetic_speech()).keys()))
def test_bad_input_raises_a_clear_code(name, speech):
    data, status, code = bad_inputs(speech)[name]
    with pytest.raises(EmotuneError) as info:
        decode_audio(data, max_seconds=60.0)
    assert (info.value.code, info.value.status) == (code, status), info.value.message
    assert ERRORS[code].status == status and info.value.message


def test_upload_size_limit():
    with pytest.raises(EmotuneError) as info:
        decode_audio(b"RIFF" + b"\0" * 5000, max_bytes=1000)
    assert (info.value.code, info.value.status) == ("file_too_large", 413)


def test_window_policy_pads_short_and_covers_long_clips():
    config = SpeechFeatureConfig()
    width = config.window_frames
    short = np.ones((100, 3), np.float32)
    windows, starts = speech_windows(short, config)
    assert windows.shape == (1, width, 3) and starts == [-(width - 100)]
    assert windows[0, : width - 100].sum() == 0 and windows[0, width - 100 :].all()  # padded before the clip
    long = np.arange(1000, dtype=np.float32)[:, None].repeat(2, 1)
    windows, starts = speech_windows(long, config)
    assert starts == [0, 150, 300, 450, 600, 700] and windows.shape == (6, width, 2)
    assert windows[-1, -1, 0] == 999  # the last window ends at the clip's end
    exact = np.ones((width, 1), np.float32)
    assert speech_windows(exact, config)[0].shape == (1, width, 1)


def test_prepare_speech_gives_a_timeline_for_long_clips(shared_data):
    clip, _ = sf.read(shared_data / "ravdess" / RAVDESS_ANGRY, dtype="float32")
    config = SpeechFeatureConfig()
    stats = FeatureStats(np.zeros(config.dim, np.float32), np.ones(config.dim, np.float32))
    long = prepare_speech(encode_soundfile(np.concatenate([clip] * 4), SR, "WAV"), config, stats)
    assert len(long.windows) >= 5 and long.windows.shape[1:] == (config.window_frames, config.dim)
    assert long.starts_s == sorted(long.starts_s) and long.ends_s[-1] <= long.audio.duration_s + 1e-3
    assert all(abs(e - s - config.window_seconds) < 1e-6 for s, e in zip(long.starts_s[:-1], long.ends_s[:-1]))
    short = prepare_speech(encode_soundfile(clip, SR, "WAV"), config, stats)
    assert len(short.windows) == 1


def test_whisper_log_mel_and_its_post_padding(ravdess_bytes):
    """The pretrained-encoder variant's features: Whisper's log-mel, padded after the sound with its silence floor."""
    config = SpeechFeatureConfig(kind="whisper_logmel")
    samples = decode_audio(ravdess_bytes, config).samples
    features = extract_speech_features(samples, config)
    assert config.dim == 80 and features.shape == (len(samples) // config.hop_length, 80)
    assert features.max() - features.min() <= 2.0 + 1e-6  # the floor sits 8 log10 units (2 after scaling) below the peak
    windows, starts = speech_windows(features, config)
    assert starts == [0] and windows.shape == (1, config.window_frames, 80)
    np.testing.assert_array_equal(windows[0, : len(features)], features)
    assert np.all(windows[0, len(features) :] == np.float32(features.max() - 2.0))
    stats = FeatureStats(np.zeros(80, np.float32), np.ones(80, np.float32))
    speech = prepare_speech(ravdess_bytes, config, stats)
    assert speech.lengths.tolist() == [[len(features)]]
