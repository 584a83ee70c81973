"""Audio bytes → normalized frame features in fixed windows: the one path that training and the gateway share.

Pipeline (every step here, nothing in the callers):

1. ``decode_audio``: any of WAV, FLAC, MP3, OGG (Vorbis/Opus), M4A/MP4 (AAC/ALAC), WebM, AIFF from bytes, decoded
   in memory with PyAV (FFmpeg's libraries ship inside the ``av`` wheel: no system codec package is needed) →
   float32 → mono (mean of the channels) → 16 kHz (soxr "HQ", the recipe that made the RAVDESS files) → leading
   and trailing silence trimmed (``librosa.effects.trim``, ``trim_top_db`` below the peak).
   Bad input raises an ``EmotuneError`` kind with a stable code (see ``ERRORS``).
2. ``extract_speech_features``: frame-level features, one row per 10 ms hop → ``(frames, dim)`` float32.
   ``kind="designed"`` (the CNN+LSTM): 512-point STFT, MFCC 40, chroma 12, spectral contrast 7 (6 octave bands +
   valley), zero-crossing rate 1 (+ the optional ``extras``). ``kind="whisper_logmel"`` (the pretrained-encoder
   variant): Whisper's own 80-band log-mel. The served model's ``model.json`` says which, with every setting.
3. ``FeatureStats.normalize``: per-feature standardisation with the mean/std computed on the training actors;
   the statistics travel with the model as ``feature_stats.json`` (plain JSON, no pickle).
4. ``speech_windows``: the fixed-frames policy. The model sees windows of ``window_frames`` (300 = 3.0 s):
   a clip of at most one window is placed at the window's end and zero-padded before it ("pre" padding, as Keras'
   ``pad_sequences``: the LSTM's last state, which the classifier reads, comes right after the speech; zero is the
   training mean after normalization). For the Whisper variant it starts the window and is followed by Whisper's
   silence floor, and its length goes to the model, which pools over the sound only. A longer clip is cut into
   windows every ``window_hop_frames`` (1.5 s), the last one aligned to the clip's end so every frame is covered.
   The clip's answer is the mean of its windows' probabilities; the gateway also returns each window's answer as a
   timeline.
"""

from __future__ import annotations

import io
import json
import struct
from dataclasses import asdict, dataclass, field, fields
from functools import lru_cache
from pathlib import Path

import av
import librosa
import librosa.effects
import librosa.feature
import numpy as np
import soxr

from gateway.errors import BadRequest, EmotuneError, InvalidInput, TooLarge, UnsupportedMedia

# error code → its kind (and so its HTTP status); the message says what was wrong.
ERRORS: dict[str, type[EmotuneError]] = {
    "empty_file": BadRequest,  # zero bytes uploaded
    "file_too_large": TooLarge,  # more than max_upload_bytes
    "audio_too_long": TooLarge,  # longer than max_audio_seconds
    "not_audio": UnsupportedMedia,  # not a media file, an image, or a container without an audio stream
    "unsupported_codec": UnsupportedMedia,  # audio, but in a format or codec this service does not decode
    "corrupt_audio": InvalidInput,  # a known format that fails to decode, or is truncated
    "empty_audio": InvalidInput,  # a valid file with no samples
    "silent_audio": InvalidInput,  # nothing above the silence threshold
    "audio_too_short": InvalidInput,  # less than min_sound_seconds of sound once silence is trimmed
}

# FFmpeg demuxer names accepted as audio containers (PyAV's ``container.format.name``).
AUDIO_CONTAINERS = {
    "wav": "WAV",
    "flac": "FLAC",
    "mp3": "MP3",
    "ogg": "OGG",
    "mov,mp4,m4a,3gp,3g2,mj2": "M4A/MP4",
    "matroska,webm": "WebM",
    "aiff": "AIFF",
}
SUPPORTED = "WAV, FLAC, MP3, OGG, M4A/MP4, WebM or AIFF"


WHISPER_MELS, WHISPER_N_FFT = 80, 400


def _fail(code: str, message: str) -> EmotuneError:
    return ERRORS[code](code, message)


@dataclass(frozen=True)
class SpeechFeatureConfig:
    """Everything that decides the features; written into ``model.json`` so serving recomputes exactly these."""

    kind: str = "designed"  # "designed": the frames below; "whisper_logmel": Whisper's 80-band log-mel (pretrained-encoder variant)
    sample_rate: int = 16000
    n_fft: int = 512
    hop_length: int = 160
    n_mels: int = 64
    n_mfcc: int = 40
    n_chroma: int = 12
    contrast_bands: int = 6  # → 7 rows (6 bands + the valley row)
    contrast_fmin: float = 100.0
    extras: tuple[str, ...] = ()  # optional: "rms" (log RMS), "f0" (log YIN pitch), "delta" (MFCC deltas)
    utterance_norm: str = "none"  # "none", "mean" (subtract the clip's mean per feature) or "meanvar" (standardise the clip)
    trim_top_db: float = 30.0
    silence_peak_dbfs: float = -50.0
    min_sound_seconds: float = 0.2
    window_frames: int = 300
    window_hop_frames: int = 150

    @property
    def dim(self) -> int:
        return len(self.feature_names)

    @property
    def feature_names(self) -> list[str]:
        if self.kind == "whisper_logmel":
            return [f"logmel{i}" for i in range(WHISPER_MELS)]
        names = [f"mfcc{i}" for i in range(self.n_mfcc)] + [f"chroma{i}" for i in range(self.n_chroma)]
        names += [f"contrast{i}" for i in range(self.contrast_bands + 1)] + ["zcr"]
        for extra in self.extras:
            names += [f"delta_mfcc{i}" for i in range(self.n_mfcc)] if extra == "delta" else [extra]
        return names

    @property
    def window_seconds(self) -> float:
        return self.window_frames * self.hop_length / self.sample_rate

    def to_dict(self) -> dict:
        data = asdict(self)
        data["extras"] = list(self.extras)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> SpeechFeatureConfig:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if "extras" in values:
            values["extras"] = tuple(values["extras"])
        return cls(**values)


@dataclass
class DecodedAudio:
    samples: np.ndarray  # float32 mono at config.sample_rate, silence trimmed
    sample_rate: int
    duration_s: float  # of the decoded file, before trimming
    trim_start_s: float  # where the kept sound starts in the file
    format: str


# --------------------------------------------------------------------------------------------------- decoding


def _wav_frames(data: bytes) -> tuple[int, int] | None:
    """(frames the RIFF/WAVE header declares, frames the bytes hold), or None when the header leaves the length open.

    FFmpeg derives a WAV's length from the file size, so it cannot tell a truncated WAV from a short one."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    pos, block_align = 12, None
    while pos + 8 <= len(data):
        chunk, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        if chunk == b"fmt " and pos + 22 <= len(data):
            block_align = struct.unpack("<H", data[pos + 20 : pos + 22])[0]
        if chunk == b"data":
            if size == 0 or size >= 0x7FFF0000 or not block_align:  # streaming writers (espeak, sox, ffmpeg) leave it open
                return None
            return size // block_align, (len(data) - pos - 8) // block_align
        pos += 8 + size + (size & 1)
    return None


def sniff_audio(data: bytes) -> str | None:
    """The audio container the first bytes announce, or None: tells a damaged audio file from something else."""
    head = data[:16]
    if head[:4] == b"RIFF" and head[8:12] in (b"WAVE", b"RF64"):
        return "WAV"
    if head[:4] == b"fLaC":
        return "FLAC"
    if head[:4] == b"OggS":
        return "OGG"
    if head[:3] == b"ID3" or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "MP3"
    if head[4:8] == b"ftyp":
        return "M4A/MP4"
    if head[:4] == b"\x1aE\xdf\xa3":
        return "WebM"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "AIFF"
    return None


def _mono_float(raw: list[np.ndarray], planar: bool, channels: int) -> np.ndarray:
    """Decoded frames of one sample format (``to_ndarray``, in order) → float32 mono, the mean of the channels;
    converted once per clip, not per frame."""
    array = np.concatenate(raw, axis=1)
    if not planar:
        array = array.reshape(-1, channels).T
    if array.dtype == np.float64:
        array = array.astype(np.float32)
    elif array.dtype == np.uint8:
        array = (array.astype(np.float32) - 128.0) / 128.0
    elif array.dtype != np.float32:
        array = (array.astype(np.float64) / float(2 ** (8 * array.dtype.itemsize - 1))).astype(np.float32)
    return array.mean(axis=0)


def _decode_raw(data: bytes, max_seconds: float) -> tuple[np.ndarray, int, str]:
    """Bytes → (float32 mono at the file's rate, rate, format label). Raises an ``EmotuneError``."""
    try:
        container = av.open(io.BytesIO(data), mode="r")
    except av.error.InvalidDataError:
        announced = sniff_audio(data)
        if announced:
            raise _fail("corrupt_audio", f"the file starts like {announced} but cannot be read: corrupt or truncated") from None
        raise _fail("not_audio", f"the upload is not a recognised audio file; send {SUPPORTED}") from None
    except (av.error.FFmpegError, EOFError, OSError) as exc:
        raise _fail("corrupt_audio", f"the audio file could not be opened: {exc}") from None
    with container:
        fmt = container.format.name
        if not container.streams.audio:
            kinds = sorted({s.type for s in container.streams}) or ["nothing"]
            raise _fail("not_audio", f"the upload ({fmt}) has no audio stream ({', '.join(kinds)} only); send {SUPPORTED}")
        label = AUDIO_CONTAINERS.get(fmt)
        if label is None:
            raise _fail("unsupported_codec", f"audio format '{fmt}' is not supported; send {SUPPORTED}")
        stream = container.streams.audio[0]
        if stream.codec_context is None:
            raise _fail("unsupported_codec", f"the {label} file uses an audio codec this service cannot decode; send {SUPPORTED}")
        declared = container.duration / 1e6 if container.duration else None
        if declared and declared > max_seconds + 0.5:
            raise _fail("audio_too_long", f"the audio lasts {declared:.1f} s; the limit is {max_seconds:g} s")
        rate = stream.codec_context.sample_rate or stream.rate
        chunks, pending, layout, total = [], [], None, 0
        try:
            for frame in container.decode(stream):
                rate = frame.sample_rate
                frame_layout = (frame.format.name, frame.format.is_planar, len(frame.layout.channels))
                if frame_layout != layout and pending:
                    chunks.append(_mono_float(pending, *layout[1:]))
                    pending = []
                layout = frame_layout
                pending.append(frame.to_ndarray())
                total += frame.samples
                if total > (max_seconds + 0.5) * rate:
                    raise _fail("audio_too_long", f"the audio lasts more than {max_seconds:g} s, the limit")
            if pending:
                chunks.append(_mono_float(pending, *layout[1:]))
        except EmotuneError:
            raise
        except av.error.DecoderNotFoundError:
            raise _fail("unsupported_codec", f"the {label} file uses an audio codec this service cannot decode; send {SUPPORTED}") from None
        except (av.error.FFmpegError, EOFError, ValueError) as exc:
            raise _fail("corrupt_audio", f"the {label} file is corrupt or truncated: {exc}") from None
    if not chunks or total == 0:
        raise _fail("empty_audio", f"the {label} file contains no audio samples")
    samples = np.concatenate(chunks).astype(np.float32, copy=False)
    decoded_s = samples.shape[0] / rate
    wav_frames = _wav_frames(data)
    if wav_frames is not None:
        declared_frames, available = wav_frames
        if available < declared_frames:
            raise _fail("corrupt_audio", f"the WAV file is truncated: its header declares {declared_frames} frames, it holds {available}")
    elif declared and fmt != "wav" and decoded_s < 0.9 * declared - 0.1:
        raise _fail("corrupt_audio", f"the {label} file is truncated: it declares {declared:.2f} s, only {decoded_s:.2f} s decode")
    if not np.isfinite(samples).all():
        raise _fail("corrupt_audio", f"the {label} file decodes to non-finite samples")
    return samples, int(rate), label


def read_audio(
    data: bytes, config: SpeechFeatureConfig | None = None, max_seconds: float = 60.0, max_bytes: int | None = None
) -> tuple[np.ndarray, str]:
    """Audio file bytes → untrimmed mono float32 at ``config.sample_rate`` and the format's name.

    Raises an ``EmotuneError`` (see ``ERRORS``) for bad input, the silence check included.
    """
    config = config or SpeechFeatureConfig()
    if not data:
        raise _fail("empty_file", "the uploaded file is empty")
    if max_bytes is not None and len(data) > max_bytes:
        raise _fail("file_too_large", f"the upload has {len(data)} bytes; the limit is {max_bytes}")
    samples, rate, label = _decode_raw(data, max_seconds)
    duration = samples.shape[0] / rate
    if duration > max_seconds:
        raise _fail("audio_too_long", f"the audio lasts {duration:.1f} s; the limit is {max_seconds:g} s")
    if rate != config.sample_rate:
        samples = soxr.resample(samples, rate, config.sample_rate, "HQ").astype(np.float32, copy=False)
    peak = float(np.abs(samples).max()) if samples.size else 0.0
    if peak <= 10 ** (config.silence_peak_dbfs / 20):
        level = f"{20 * np.log10(peak):.1f}" if peak > 0 else "-inf"
        raise _fail("silent_audio", f"the audio is silent (peak {level} dBFS, threshold {config.silence_peak_dbfs:g} dBFS)")
    return np.ascontiguousarray(samples, dtype=np.float32), label


def trim_silence(samples: np.ndarray, config: SpeechFeatureConfig | None = None) -> tuple[np.ndarray, int]:
    """Leading and trailing silence off (``trim_top_db`` below the peak) → (kept samples, first kept sample)."""
    config = config or SpeechFeatureConfig()
    trimmed, (start, _end) = librosa.effects.trim(samples, top_db=config.trim_top_db, frame_length=config.n_fft, hop_length=config.hop_length)
    if trimmed.shape[0] < config.min_sound_seconds * config.sample_rate:
        raise _fail(
            "audio_too_short", f"only {trimmed.shape[0] / config.sample_rate:.2f} s of sound; at least {config.min_sound_seconds:g} s is needed"
        )
    return np.ascontiguousarray(trimmed, dtype=np.float32), int(start)


def decode_audio(data: bytes, config: SpeechFeatureConfig | None = None, max_seconds: float = 60.0, max_bytes: int | None = None) -> DecodedAudio:
    """Audio file bytes → trimmed 16 kHz mono float32. Raises an ``EmotuneError`` (see ``ERRORS``) for bad input."""
    config = config or SpeechFeatureConfig()
    samples, label = read_audio(data, config, max_seconds=max_seconds, max_bytes=max_bytes)
    trimmed, start = trim_silence(samples, config)
    return DecodedAudio(trimmed, config.sample_rate, samples.shape[0] / config.sample_rate, start / config.sample_rate, label)


# --------------------------------------------------------------------------------------------------- features


def extract_speech_features(samples: np.ndarray, config: SpeechFeatureConfig | None = None) -> np.ndarray:
    """Mono float32 samples at ``config.sample_rate`` → ``(frames, config.dim)`` float32, one row per hop."""
    config = config or SpeechFeatureConfig()
    y = np.asarray(samples, dtype=np.float32)
    if config.kind == "whisper_logmel":
        return whisper_log_mel(y, config)
    sr, n_fft, hop = config.sample_rate, config.n_fft, config.hop_length
    magnitude = np.abs(librosa.stft(y, n_fft=n_fft, hop_length=hop, win_length=n_fft, window="hann", center=True))
    power = magnitude**2
    mel = librosa.feature.melspectrogram(S=power, sr=sr, n_fft=n_fft, n_mels=config.n_mels)
    mfcc = librosa.feature.mfcc(S=librosa.power_to_db(mel), n_mfcc=config.n_mfcc)
    chroma = librosa.feature.chroma_stft(S=power, sr=sr, n_fft=n_fft, hop_length=hop, n_chroma=config.n_chroma)
    contrast = librosa.feature.spectral_contrast(
        S=magnitude, sr=sr, n_fft=n_fft, hop_length=hop, n_bands=config.contrast_bands, fmin=config.contrast_fmin
    )
    zcr = librosa.feature.zero_crossing_rate(y, frame_length=n_fft, hop_length=hop, center=True)
    rows = [mfcc, chroma, contrast, zcr]
    for extra in config.extras:
        if extra == "rms":
            rms = librosa.feature.rms(S=magnitude, frame_length=n_fft, hop_length=hop)
            rows.append(np.log(rms + 1e-5))
        elif extra == "f0":
            f0 = librosa.yin(y, fmin=60, fmax=500, sr=sr, frame_length=1024, hop_length=hop, center=True)
            rows.append(np.log(f0)[None, :])
        elif extra == "delta":
            rows.append(librosa.feature.delta(mfcc, width=9) if mfcc.shape[1] >= 9 else np.zeros_like(mfcc))
        else:
            raise ValueError(f"unknown speech feature extra: {extra}")
    frames = min(r.shape[1] for r in rows)
    features = np.ascontiguousarray(np.concatenate([r[:, :frames] for r in rows], axis=0).T, dtype=np.float32)
    return utterance_normalize(features, config)


@lru_cache
def whisper_mel_filters(sample_rate: int) -> np.ndarray:
    return librosa.filters.mel(sr=sample_rate, n_fft=WHISPER_N_FFT, n_mels=WHISPER_MELS).astype(np.float32)


def whisper_log_mel(samples: np.ndarray, config: SpeechFeatureConfig) -> np.ndarray:
    """Whisper's input features, as its own ``log_mel_spectrogram`` computes them (400-point STFT, 10 ms hop,
    80 Slaney mel bands, log10, floor 8 below the peak, ``(x + 4) / 4``) → ``(frames, 80)`` float32."""
    spectrum = librosa.stft(samples, n_fft=WHISPER_N_FFT, hop_length=config.hop_length, window="hann", center=True, pad_mode="reflect")[:, :-1]
    mel = whisper_mel_filters(config.sample_rate) @ (np.abs(spectrum) ** 2)
    log_spec = np.log10(np.maximum(mel, 1e-10))
    log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
    return np.ascontiguousarray(((log_spec + 4.0) / 4.0).T, dtype=np.float32)


def utterance_normalize(features: np.ndarray, config: SpeechFeatureConfig) -> np.ndarray:
    """Per-clip normalization (``config.utterance_norm``): removes what is constant over a clip (speaker, channel)."""
    if config.utterance_norm == "none":
        return features
    centred = features - features.mean(axis=0, keepdims=True)
    if config.utterance_norm == "mean":
        return centred.astype(np.float32)
    if config.utterance_norm == "meanvar":
        return (centred / (features.std(axis=0, keepdims=True) + 1e-3)).astype(np.float32)
    raise ValueError(f"unknown utterance_norm: {config.utterance_norm}")


@dataclass
class FeatureStats:
    """Per-feature mean and std from the training actors, stored as ``feature_stats.json``."""

    mean: np.ndarray
    std: np.ndarray
    names: list[str] = field(default_factory=list)

    @classmethod
    def fit(cls, frames: np.ndarray, names: list[str]) -> FeatureStats:
        frames = np.asarray(frames, dtype=np.float64)
        return cls(frames.mean(0).astype(np.float32), np.maximum(frames.std(0), 1e-6).astype(np.float32), list(names))

    def normalize(self, features: np.ndarray) -> np.ndarray:
        return ((features - self.mean) / self.std).astype(np.float32)

    def to_json(self, path: Path) -> None:
        path.write_text(json.dumps({"names": self.names, "mean": self.mean.tolist(), "std": self.std.tolist()}, indent=1) + "\n")

    @classmethod
    def from_json(cls, path: Path) -> FeatureStats:
        data = json.loads(Path(path).read_text())
        return cls(np.asarray(data["mean"], dtype=np.float32), np.asarray(data["std"], dtype=np.float32), data.get("names", []))


def speech_windows(features: np.ndarray, config: SpeechFeatureConfig | None = None) -> tuple[np.ndarray, list[int]]:
    """Normalized ``(frames, dim)`` → ``(windows, window_frames, dim)`` and each window's first frame.

    The fixed-frames policy: a clip of at most one window is zero-padded before it (it ends where the window ends);
    a longer one is cut every ``window_hop_frames`` with the last window aligned to the end (a negative start marks
    the padded short clip).
    """
    config = config or SpeechFeatureConfig()
    width = config.window_frames
    frames, dim = features.shape
    if frames <= width:
        if config.kind == "whisper_logmel":  # Whisper pads with silence after the audio: its log-mel floor
            out = np.full((1, width, dim), features.max() - 2.0, dtype=np.float32)
            out[0, :frames] = features
            return out, [0]
        out = np.zeros((1, width, dim), dtype=np.float32)
        offset = width - frames
        out[0, offset:] = features
        return out, [-offset]
    starts = window_starts(frames, config)
    return np.stack([features[s : s + width] for s in starts]).astype(np.float32), starts


def window_starts(frames: int, config: SpeechFeatureConfig) -> list[int]:
    """First frame of each window of a clip longer than one: every ``window_hop_frames``, the last aligned to the end."""
    width = config.window_frames
    starts = list(range(0, frames - width + 1, config.window_hop_frames))
    if starts[-1] + width < frames:
        starts.append(frames - width)
    return starts


def window_samples(config: SpeechFeatureConfig) -> int:
    """Samples a window's frames read, the STFT's half-window on each side included."""
    return (config.window_frames - 1) * config.hop_length + WHISPER_N_FFT


def speech_sample_windows(samples: np.ndarray, config: SpeechFeatureConfig) -> tuple[np.ndarray, list[int], int]:
    """Trimmed samples → ``(windows, window_samples(config))`` float32, each window's first frame, and the clip's frames:
    the windows ``speech_windows`` cuts from ``whisper_log_mel``'s frames, as the samples those frames read (the clip
    reflect-padded by half an FFT window, as the centred STFT pads it); a clip of at most one window is zero-padded
    after its sound (the graph replaces the frames past its sound with the silence floor)."""
    size, step = window_samples(config), config.hop_length
    padded = np.pad(samples, WHISPER_N_FFT // 2, mode="reflect")
    frames = samples.shape[0] // step
    if frames <= config.window_frames:
        out = np.zeros((1, size), dtype=np.float32)
        take = min(size, padded.shape[0])
        out[0, :take] = padded[:take]
        return out, [0], frames
    starts = window_starts(frames, config)
    return np.stack([padded[s * step : s * step + size] for s in starts]).astype(np.float32, copy=False), starts, frames


@dataclass
class SpeechInput:
    windows: np.ndarray  # (n, window_frames, dim) float32 normalized features, or (n, window_samples) samples
    lengths: np.ndarray  # (n, 1) int64: frames of sound in each window (the rest is padding)
    starts_s: list[float]  # each window's start in the file, seconds
    ends_s: list[float]
    audio: DecodedAudio


def prepare_speech(
    data: bytes, config: SpeechFeatureConfig, stats: FeatureStats, max_seconds: float = 60.0, max_bytes: int | None = None
) -> SpeechInput:
    """The whole path from uploaded bytes to the model's input batch (used by the gateway and the CLI)."""
    audio = decode_audio(data, config, max_seconds=max_seconds, max_bytes=max_bytes)
    features = stats.normalize(extract_speech_features(audio.samples, config))
    windows, starts = speech_windows(features, config)
    return _speech_input(audio, windows, starts, features.shape[0], config)


def prepare_speech_samples(data: bytes, config: SpeechFeatureConfig, max_seconds: float = 60.0, max_bytes: int | None = None) -> SpeechInput:
    """``prepare_speech`` for a graph that computes the log-mel itself (``export.speech_front_end``): sample windows."""
    audio = decode_audio(data, config, max_seconds=max_seconds, max_bytes=max_bytes)
    windows, starts, frames = speech_sample_windows(audio.samples, config)
    return _speech_input(audio, windows, starts, frames, config)


def _speech_input(audio: DecodedAudio, windows: np.ndarray, starts: list[int], frames: int, config: SpeechFeatureConfig) -> SpeechInput:
    lengths = np.full((len(windows), 1), min(frames, config.window_frames), dtype=np.int64)
    step = config.hop_length / config.sample_rate
    sound_end = audio.trim_start_s + audio.samples.shape[0] / config.sample_rate
    begin = [audio.trim_start_s + max(s, 0) * step for s in starts]
    end = [min(b + config.window_seconds, sound_end) for b in begin]
    return SpeechInput(windows, lengths, [round(b, 3) for b in begin], [round(e, 3) for e in end], audio)


def warm_up(config: SpeechFeatureConfig | None = None) -> None:
    """Run the whole path once on a generated tone: librosa loads its submodules lazily (seconds on first use)."""
    config = config or SpeechFeatureConfig()
    t = np.arange(int(0.6 * config.sample_rate)) / config.sample_rate
    tone = (0.3 * np.sin(2 * np.pi * 220 * t) * np.hanning(t.size)).astype(np.float32)
    header = struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + 2 * tone.size,
        b"WAVE",
        b"fmt ",
        16,
        1,
        1,
        config.sample_rate,
        2 * config.sample_rate,
        2,
        16,
        b"data",
        2 * tone.size,
    )
    audio = decode_audio(header + (tone * 32767).astype("<i2").tobytes(), config)
    extract_speech_features(audio.samples, config)
