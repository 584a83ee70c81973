"""RAVDESS, shared by both speech variants: file names → clips, speaker-independent splits (held-out actors and
actor-grouped folds), waveform augmentation, per-file feature caching, and windows → clip answers.

Features come from ``gateway.preprocessing.audio``, the module the gateway runs, so serving computes exactly what
training saw. Augmented copies of each clip are computed once and cached under ``<out_dir>/cache``.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from gateway.errors import EmotuneError
from gateway.preprocessing.audio import SpeechFeatureConfig, extract_speech_features, read_audio, trim_silence, utterance_normalize

RAVDESS_EMOTIONS = {1: "neutral", 2: "calm", 3: "happy", 4: "sad", 5: "angry", 6: "fearful", 7: "disgust", 8: "surprised"}
DESIGNED_LABELS = ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust"]
ACTORS = tuple(range(1, 21))


def actor_folds(actors: tuple[int, ...] = ACTORS, n_folds: int = 5) -> list[tuple[int, ...]]:
    """Folds of whole actors, as many men (odd ids) as women (even ids) in each: 1–20 in 5 → (1, 2, 11, 12), (3, 4, 13, 14), …"""
    men, women = [a for a in actors if a % 2], [a for a in actors if not a % 2]
    return [tuple(sorted(men[f::n_folds] + women[f::n_folds])) for f in range(n_folds)]


@dataclass
class Clip:
    path: Path
    actor: int
    label: int
    emotion: str


def parse_ravdess_name(path: Path) -> tuple[int, int]:
    """``MM-VV-EE-II-SS-RR-AA`` → (emotion code, actor id)."""
    parts = path.stem.split("-")
    if len(parts) != 7:
        raise ValueError(f"not a RAVDESS file name: {path.name}")
    return int(parts[2]), int(parts[6])


def read_ravdess(data_dir: Path, labels: list[str]) -> list[Clip]:
    """Every clip whose emotion is in ``labels`` (so 'surprised' is dropped by the default label list)."""
    clips = []
    for path in sorted(Path(data_dir).glob("Actor_*/*.*")):
        if path.suffix.lower() not in (".flac", ".wav"):
            continue
        code, actor = parse_ravdess_name(path)
        emotion = RAVDESS_EMOTIONS[code]
        if emotion in labels:
            clips.append(Clip(path, actor, labels.index(emotion), emotion))
    if not clips:
        raise FileNotFoundError(f"no RAVDESS clips under {data_dir}")
    return clips


def split_by_actor(clips: list[Clip], val_actors, test_actors) -> tuple[list[Clip], list[Clip], list[Clip]]:
    """Whole actors go to validation and test, by id; the rest train."""
    held = set(val_actors) | set(test_actors)
    if set(val_actors) & set(test_actors):
        raise ValueError("validation and test actors overlap")
    train = [c for c in clips if c.actor not in held]
    val = [c for c in clips if c.actor in set(val_actors)]
    test = [c for c in clips if c.actor in set(test_actors)]
    return train, val, test


def limit_clips(clips: list[Clip], limit: int | None, seed: int) -> list[Clip]:
    """A subset stratified by label (every label keeps some clips)."""
    if not limit or limit >= len(clips):
        return clips
    rng = np.random.default_rng(seed)
    by_label: dict[int, list[Clip]] = {}
    for c in clips:
        by_label.setdefault(c.label, []).append(c)
    per = max(1, limit // len(by_label))
    keep = [group[i] for group in by_label.values() for i in rng.permutation(len(group))[:per]]
    return sorted(keep, key=lambda c: c.path)


def augment_waveform(y: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Random gain (±6 dB), and each with probability ½: time stretch (×0.85–1.15), pitch shift (±2 semitones),
    additive noise (white or pink, 10–30 dB SNR)."""
    import librosa

    y = y.astype(np.float32)
    if rng.random() < 0.5:
        y = librosa.effects.time_stretch(y, rate=float(rng.uniform(0.85, 1.15)))
    if rng.random() < 0.5:
        y = librosa.effects.pitch_shift(y, sr=sr, n_steps=float(rng.uniform(-2.0, 2.0)))
    y = y * float(10 ** (rng.uniform(-6.0, 6.0) / 20))
    if rng.random() < 0.5:
        noise = rng.standard_normal(len(y)).astype(np.float32)
        if rng.random() < 0.5:  # pink: 1/f power
            spectrum = np.fft.rfft(noise)
            spectrum /= np.sqrt(np.maximum(np.arange(len(spectrum)), 1))
            noise = np.fft.irfft(spectrum, n=len(y)).astype(np.float32)
        signal_power = float(np.mean(y**2)) + 1e-12
        snr_db = float(rng.uniform(10.0, 30.0))
        noise *= math.sqrt(signal_power / (10 ** (snr_db / 10)) / (float(np.mean(noise**2)) + 1e-12))
        y = y + noise
    peak = float(np.abs(y).max())
    return (y / peak * 0.99 if peak > 0.99 else y).astype(np.float32)


def clip_features(path: Path, config: SpeechFeatureConfig, variant: int = 0, seed: int = 0) -> np.ndarray:
    """Un-normalized ``(frames, dim)`` features of one file: variant 0 is the file as the gateway sees it,
    variants ≥ 1 are augmented copies (deterministic per file, variant and seed)."""
    samples, _ = read_audio(Path(path).read_bytes(), config, max_seconds=600)
    if variant:
        digest = hashlib.sha256(f"{Path(path).name}:{variant}:{seed}".encode()).digest()
        rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
        samples = augment_waveform(samples, config.sample_rate, rng)
    try:
        trimmed, _ = trim_silence(samples, config)
    except EmotuneError:
        trimmed = samples
    return extract_speech_features(trimmed, config)


def _cache_key(config: SpeechFeatureConfig, seed: int) -> str:
    features = {k: v for k, v in config.to_dict().items() if k != "utterance_norm"}  # applied after the cache
    text = json.dumps({"features": features, "seed": seed, "augment": 1}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _extract_job(job: tuple[str, dict, int, int]) -> np.ndarray:
    path, config, variant, seed = job
    return clip_features(Path(path), SpeechFeatureConfig.from_dict(config), variant, seed)


def cached_features(clips: list[Clip], variant: int, config: SpeechFeatureConfig, cache_dir: Path, seed: int, workers: int = 1) -> list[np.ndarray]:
    """Features of ``clips`` for one variant, computed once per file and kept in ``cache_dir`` as ``.npy``
    (before the per-clip normalization, which is applied on loading: it does not need a cache of its own)."""
    final, config = config, replace(config, utterance_norm="none")
    directory = cache_dir / _cache_key(config, seed) / f"v{variant}"
    directory.mkdir(parents=True, exist_ok=True)
    (directory.parent / "features.json").write_text(json.dumps(config.to_dict(), indent=2))
    paths = [directory / f"{c.path.stem}.npy" for c in clips]
    missing = [i for i, p in enumerate(paths) if not p.exists()]
    if missing:
        jobs = [(str(clips[i].path), config.to_dict(), variant, seed) for i in missing]
        started = time.perf_counter()
        if workers > 1 and len(jobs) > 8:
            with ProcessPoolExecutor(workers) as pool:
                results = list(pool.map(_extract_job, jobs, chunksize=8))
        else:
            results = [_extract_job(j) for j in jobs]
        for i, feats in zip(missing, results, strict=True):
            np.save(paths[i], feats)
        print(f"features: {len(jobs)} clips (variant {variant}) in {time.perf_counter() - started:.1f} s", flush=True)
    return [utterance_normalize(np.load(p), final) for p in paths]


def clip_probabilities(window_probs: np.ndarray, owner: np.ndarray, n_clips: int) -> np.ndarray:
    """A clip's answer is the mean of its windows' probabilities (what the gateway does)."""
    out = np.zeros((n_clips, window_probs.shape[1]), dtype=np.float64)
    np.add.at(out, owner, window_probs)
    return (out / np.bincount(owner, minlength=n_clips)[:, None]).astype(np.float32)
