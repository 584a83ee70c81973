"""Speech emotion: RAVDESS → MFCC/chroma/contrast/ZCR frames → the designed Conv1D + LSTM model.

Speaker-independent by construction: validation and test actors are whole actors held out by id
(``SpeechTrainConfig.val_actors`` / ``test_actors``), never random files. Features come from
``gateway.preprocessing.audio``, the module the gateway runs, so serving computes exactly what training saw.
Augmentation (noise, pitch shift, time stretch, gain) is applied to the waveform before trimming and feature
extraction; a few augmented copies of each training clip are computed once and cached under ``<out_dir>/cache``.

``--variant whisper`` trains the pretrained-encoder variant instead (``training.speech_whisper``), on the same
split, windows and augmented copies.
"""

from __future__ import annotations

import hashlib
import json
import math
import shlex
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from gateway.preprocessing import InvalidInput
from gateway.preprocessing.audio import (
    FeatureStats,
    SpeechFeatureConfig,
    extract_speech_features,
    read_audio,
    speech_windows,
    trim_silence,
    utterance_normalize,
)
from training.loop import fit, predict, seed_everything
from training.report import classification_metrics, write_report

RAVDESS_EMOTIONS = {1: "neutral", 2: "calm", 3: "happy", 4: "sad", 5: "angry", 6: "fearful", 7: "disgust", 8: "surprised"}
DESIGNED_LABELS = ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust"]


@dataclass
class SpeechTrainConfig:
    data_dir: Path = Path("../shared/data/ravdess")
    out_dir: Path = Path("runs/speech")
    labels: list[str] = field(default_factory=lambda: list(DESIGNED_LABELS))  # 'surprised' left out, as designed
    val_actors: tuple[int, ...] = (15, 16)  # one male, one female: early stopping only
    test_actors: tuple[int, ...] = (17, 18, 19, 20)  # two male, two female: the reported numbers
    features: SpeechFeatureConfig = field(default_factory=SpeechFeatureConfig)
    augment_copies: int = 4  # augmented copies of every training clip (plus the clean one)
    spec_augment: bool = False  # also mask random time spans and feature bands of each training window
    epochs: int = 60
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-3
    label_smoothing: float = 0.1
    patience: int = 15
    limit: int | None = None  # at most this many training clips (smoke runs)
    test_limit: int | None = None
    variant: str = "cnn_lstm"
    device: str = "cpu"
    seed: int = 13
    threads: int | None = None
    workers: int = 2  # feature-extraction processes


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


# ------------------------------------------------------------------------------------------------ augmentation


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
    except InvalidInput:
        trimmed = samples
    return extract_speech_features(trimmed, config)


def _cache_key(config: SpeechFeatureConfig, seed: int) -> str:
    features = {k: v for k, v in config.to_dict().items() if k != "utterance_norm"}  # applied after the cache
    text = json.dumps({"features": features, "seed": seed, "augment": 1}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _extract_job(job: tuple[str, dict, int, int]) -> np.ndarray:
    path, config, variant, seed = job
    return clip_features(Path(path), SpeechFeatureConfig.from_dict(config), variant, seed)


def cached_features(clips: list[Clip], variant: int, config: SpeechFeatureConfig, cache_dir: Path, seed: int,
                    workers: int = 1) -> list[np.ndarray]:
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
        for i, feats in zip(missing, results):
            np.save(paths[i], feats)
        print(f"features: {len(jobs)} clips (variant {variant}) in {time.perf_counter() - started:.1f} s", flush=True)
    return [utterance_normalize(np.load(p), final) for p in paths]


# ------------------------------------------------------------------------------------------------ model


class SpeechEmotionModel(nn.Module):
    """As designed: Conv1D 64 → BN → ReLU → pool → Conv1D 128 → BN → ReLU → pool → LSTM 128 → dropout 0.3 →
    LSTM 64 → dropout 0.3 → dense 64 (ReLU) → dropout 0.4 → n classes (logits). Input ``(batch, frames, features)``."""

    def __init__(self, n_features: int, n_labels: int):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv1d(n_features, 64, kernel_size=3, padding=1), nn.BatchNorm1d(64), nn.ReLU(), nn.MaxPool1d(2),
            nn.Conv1d(64, 128, kernel_size=3, padding=1), nn.BatchNorm1d(128), nn.ReLU(), nn.MaxPool1d(2),
        )
        self.lstm1 = nn.LSTM(128, 128, batch_first=True)
        self.drop1 = nn.Dropout(0.3)
        self.lstm2 = nn.LSTM(128, 64, batch_first=True)
        self.drop2 = nn.Dropout(0.3)
        self.head = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Dropout(0.4), nn.Linear(64, n_labels))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.conv(features.transpose(1, 2)).transpose(1, 2)
        x, _ = self.lstm1(x)
        x, _ = self.lstm2(self.drop1(x))
        return self.head(self.drop2(x[:, -1]))


def build_model(variant: str, n_features: int, n_labels: int) -> nn.Module:
    if variant in ("cnn_lstm", "designed"):
        return SpeechEmotionModel(n_features, n_labels)
    if variant.startswith("whisper"):
        from training.speech_whisper import build_whisper_model

        return build_whisper_model(variant, n_labels)
    raise ValueError(f"unknown speech variant {variant!r} (known: cnn_lstm, whisper, whisper<blocks>)")


# ------------------------------------------------------------------------------------------------ batches


def _fit_window(feats: np.ndarray, width: int, rng: np.random.Generator) -> np.ndarray:
    """Training crop: a random ``width``-frame window of a long clip; a short clip is zero-padded before it, as
    served (``speech_windows``)."""
    frames, dim = feats.shape
    if frames > width:
        start = int(rng.integers(0, frames - width + 1))
        return feats[start : start + width]
    out = np.zeros((width, dim), dtype=np.float32)
    out[width - frames :] = feats
    return out


def _mask(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """SpecAugment-style: two time spans (≤ 25 frames) and one feature band (≤ 6 features) set to the mean (0)."""
    x = x.copy()
    frames, dim = x.shape[1:]
    for row in x:
        for _ in range(2):
            width = int(rng.integers(0, 26))
            start = int(rng.integers(0, frames - width + 1))
            row[start : start + width] = 0
        width = int(rng.integers(0, 7))
        start = int(rng.integers(0, dim - width + 1))
        row[:, start : start + width] = 0
    return x


def train_batches(variants: list[list[np.ndarray]], labels: np.ndarray, cfg: SpeechTrainConfig, rng: np.random.Generator):
    """One epoch: each training clip once, as a random one of its variants (clean or augmented), random crop."""
    order = rng.permutation(len(labels))
    width = cfg.features.window_frames
    for start in range(0, len(order), cfg.batch_size):
        idx = order[start : start + cfg.batch_size]
        if len(idx) < 2:
            continue
        x = np.stack([_fit_window(variants[int(rng.integers(len(variants)))][i], width, rng) for i in idx])
        if cfg.spec_augment:
            x = _mask(x, rng)
        yield {"features": torch.from_numpy(x), "labels": torch.from_numpy(labels[idx])}


def window_set(normalized: list[np.ndarray], labels: np.ndarray, config: SpeechFeatureConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every clip → its served windows: (windows, window labels, window → clip index)."""
    windows, wl, owner = [], [], []
    for i, feats in enumerate(normalized):
        w, _ = speech_windows(feats, config)
        windows.append(w)
        wl += [labels[i]] * len(w)
        owner += [i] * len(w)
    return np.concatenate(windows), np.asarray(wl, dtype=np.int64), np.asarray(owner)


def window_batches(windows: np.ndarray, labels: np.ndarray, batch_size: int = 64):
    for start in range(0, len(windows), batch_size):
        yield {"features": torch.from_numpy(windows[start : start + batch_size]), "labels": torch.from_numpy(labels[start : start + batch_size])}


def clip_probabilities(window_probs: np.ndarray, owner: np.ndarray, n_clips: int) -> np.ndarray:
    """A clip's answer is the mean of its windows' probabilities (what the gateway does)."""
    out = np.zeros((n_clips, window_probs.shape[1]), dtype=np.float64)
    np.add.at(out, owner, window_probs)
    return (out / np.bincount(owner, minlength=n_clips)[:, None]).astype(np.float32)


# ------------------------------------------------------------------------------------------------ training



def write_train_config(cfg: SpeechTrainConfig, fc: SpeechFeatureConfig, train: list[Clip], test: list[Clip]) -> str:
    """``train_config.json`` (labels, features and test files: what export reads) → the report's line on the split."""
    meta = {"labels": cfg.labels, "variant": cfg.variant, "features": fc.to_dict(), "seed": cfg.seed,
            "val_actors": list(cfg.val_actors), "test_actors": list(cfg.test_actors), "test_files": [c.path.name for c in test]}
    (cfg.out_dir / "train_config.json").write_text(json.dumps(meta, indent=2) + "\n")
    return (f"speaker-independent: train actors {sorted({c.actor for c in train})}, validation actors "
            f"{list(cfg.val_actors)} (early stopping), test actors {list(cfg.test_actors)} (held out by id)")

def train_speech(cfg: SpeechTrainConfig) -> dict:
    if cfg.variant.startswith("whisper"):
        from training.speech_whisper import train_whisper

        return train_whisper(cfg)
    seed_everything(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    fc = cfg.features
    clips = read_ravdess(cfg.data_dir, cfg.labels)
    train, val, test = split_by_actor(clips, cfg.val_actors, cfg.test_actors)
    train = limit_clips(train, cfg.limit, cfg.seed)
    val = limit_clips(val, cfg.test_limit, cfg.seed)
    test = limit_clips(test, cfg.test_limit, cfg.seed)
    print(f"clips: train {len(train)} (actors {sorted({c.actor for c in train})}), val {len(val)} (actors "
          f"{sorted({c.actor for c in val})}), test {len(test)} (actors {sorted({c.actor for c in test})})", flush=True)
    cache = cfg.out_dir / "cache"
    train_variants = [cached_features(train, v, fc, cache, cfg.seed, cfg.workers) for v in range(cfg.augment_copies + 1)]
    val_raw = cached_features(val, 0, fc, cache, cfg.seed, cfg.workers)
    test_raw = cached_features(test, 0, fc, cache, cfg.seed, cfg.workers)

    # Normalization statistics from the clean training clips only.
    stats = FeatureStats.fit(np.concatenate(train_variants[0]), fc.feature_names)
    train_norm = [[stats.normalize(f) for f in variant] for variant in train_variants]
    y_train = np.asarray([c.label for c in train], dtype=np.int64)
    y_val = np.asarray([c.label for c in val], dtype=np.int64)
    y_test = np.asarray([c.label for c in test], dtype=np.int64)
    val_w, val_wl, _ = window_set([stats.normalize(f) for f in val_raw], y_val, fc)
    test_w, test_wl, test_owner = window_set([stats.normalize(f) for f in test_raw], y_test, fc)

    model = build_model(cfg.variant, fc.dim, len(cfg.labels))
    counts = np.bincount(y_train, minlength=len(cfg.labels)).astype(np.float64)
    weights = torch.tensor(counts.sum() / np.maximum(counts, 1) / len(cfg.labels), dtype=torch.float32)
    loss_fn = nn.CrossEntropyLoss(weight=weights, label_smoothing=cfg.label_smoothing)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, math.ceil(len(train) / cfg.batch_size))
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch + 10,
                                                    pct_start=0.15)
    rng = np.random.default_rng(cfg.seed)
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = cfg.out_dir / "model.pt"
    result = fit(
        model,
        train_batches=lambda epoch: train_batches(train_norm, y_train, cfg, rng),
        val_batches=lambda: window_batches(val_w, val_wl),
        optimizer=optimizer,
        loss_fn=loss_fn,
        epochs=cfg.epochs,
        patience=cfg.patience,
        checkpoint=checkpoint,
        device=cfg.device,
        scheduler=scheduler,
    )
    window_probs, _ = predict(model, window_batches(test_w, test_wl), cfg.device, desc="test")
    test_probs = clip_probabilities(window_probs, test_owner, len(test))
    np.save(cfg.out_dir / "test_probabilities.npy", test_probs)
    stats.to_json(cfg.out_dir / "feature_stats.json")
    split = write_train_config(cfg, fc, train, test)
    report = {
        "model": f"speech_emotion ({cfg.variant}): MFCC 40 + chroma 12 + spectral contrast 7 + ZCR"
                 + (f" + {'/'.join(fc.extras)}" if fc.extras else "") + " frames → Conv1D×2 + LSTM×2 (as designed)",
        "command": shlex.join(["emotune", *sys.argv[1:]]),
        "split": split,
        "config": {k: str(v) for k, v in asdict(cfg).items() if k != "features"},
        "features": fc.to_dict(),
        "labels": cfg.labels,
        "parameters": sum(p.numel() for p in model.parameters()),
        "best_epoch": result.best_epoch,
        "history": result.history,
        "test_pytorch_fp32": classification_metrics(y_test, test_probs.argmax(1), cfg.labels),
    }
    write_report(cfg.out_dir, "speech_emotion (held-out actors)", report, cfg.labels, "test_pytorch_fp32")
    return report


def main(args) -> dict:
    """``emotune train speech``: reads the shared CLI options."""
    cfg = SpeechTrainConfig()
    overrides = {
        "data_dir": getattr(args, "data_dir", None), "out_dir": getattr(args, "out_dir", None),
        "epochs": getattr(args, "epochs", None), "batch_size": getattr(args, "batch_size", None),
        "lr": getattr(args, "lr", None), "limit": getattr(args, "limit", None),
        "test_limit": getattr(args, "test_limit", None), "variant": getattr(args, "variant", None),
        "device": getattr(args, "device", None), "seed": getattr(args, "seed", None), "threads": getattr(args, "threads", None),
    }
    cfg = replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
    report = train_speech(cfg)
    test = report["test_pytorch_fp32"]
    print(f"held-out actors {list(cfg.test_actors)}: accuracy {test['accuracy']:.4f}  macro-F1 {test['macro_f1']:.4f}  "
          f"(best epoch {report['best_epoch']}); report in {cfg.out_dir}")
    return report
