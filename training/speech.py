"""Speech emotion: RAVDESS → MFCC/chroma/contrast/ZCR frames → the designed Conv1D + LSTM model.

Speaker-independent by construction: validation and test actors are whole actors held out by id
(``SpeechTrainConfig.val_actors`` / ``test_actors``), never random files. Features come from
``gateway.preprocessing.audio``, the module the gateway runs, so serving computes exactly what training saw.
Augmentation (noise, pitch shift, time stretch, gain) is applied to the waveform before trimming and feature
extraction; a few augmented copies of each training clip are computed once and cached under ``<out_dir>/cache``.

``--variant whisper`` trains the pretrained-encoder variant instead (``training.speech_whisper``: its own config,
chosen and scored by actor-grouped cross-validation over every actor), on the same windows and augmented copies.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from gateway.preprocessing.audio import FeatureStats, SpeechFeatureConfig, speech_windows
from training.loop import fit, predict, seed_everything
from training.options import config_from_args
from training.ravdess import (  # noqa: F401  (re-exported: the speech modules' one import)
    DESIGNED_LABELS,
    RAVDESS_EMOTIONS,
    Clip,
    augment_waveform,
    cached_features,
    clip_features,
    clip_probabilities,
    limit_clips,
    parse_ravdess_name,
    read_ravdess,
    split_by_actor,
)
from training.report import classification_metrics, record_command, write_report
from training.speech_whisper import WhisperTrainConfig, parse_variant, train_whisper


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


# ------------------------------------------------------------------------------------------------ model


class SpeechEmotionModel(nn.Module):
    """As designed: Conv1D 64 → BN → ReLU → pool → Conv1D 128 → BN → ReLU → pool → LSTM 128 → dropout 0.3 →
    LSTM 64 → dropout 0.3 → dense 64 (ReLU) → dropout 0.4 → n classes (logits). Input ``(batch, frames, features)``."""

    def __init__(self, n_features: int, n_labels: int):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv1d(n_features, 64, kernel_size=3, padding=1),
            nn.BatchNorm1d(64),
            nn.ReLU(),
            nn.MaxPool1d(2),
            nn.Conv1d(64, 128, kernel_size=3, padding=1),
            nn.BatchNorm1d(128),
            nn.ReLU(),
            nn.MaxPool1d(2),
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
    raise ValueError(f"unknown designed speech variant {variant!r} (cnn_lstm; the whisper variants: training.speech_whisper)")


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


# ------------------------------------------------------------------------------------------------ training


def write_train_config(cfg: SpeechTrainConfig, fc: SpeechFeatureConfig, train: list[Clip], test: list[Clip]) -> str:
    """``train_config.json`` (labels, features and test files: what export reads) → the report's line on the split."""
    meta = {
        "labels": cfg.labels,
        "variant": cfg.variant,
        "features": fc.to_dict(),
        "seed": cfg.seed,
        "val_actors": list(cfg.val_actors),
        "test_actors": list(cfg.test_actors),
        "test_files": [c.path.name for c in test],
    }
    (cfg.out_dir / "train_config.json").write_text(json.dumps(meta, indent=2) + "\n")
    return (
        f"speaker-independent: train actors {sorted({c.actor for c in train})}, validation actors "
        f"{list(cfg.val_actors)} (early stopping), test actors {list(cfg.test_actors)} (held out by id)"
    )


def train_speech(cfg: SpeechTrainConfig) -> dict:
    seed_everything(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    fc = cfg.features
    clips = read_ravdess(cfg.data_dir, cfg.labels)
    train, val, test = split_by_actor(clips, cfg.val_actors, cfg.test_actors)
    train = limit_clips(train, cfg.limit, cfg.seed)
    val = limit_clips(val, cfg.test_limit, cfg.seed)
    test = limit_clips(test, cfg.test_limit, cfg.seed)
    print(
        f"clips: train {len(train)} (actors {sorted({c.actor for c in train})}), val {len(val)} (actors "
        f"{sorted({c.actor for c in val})}), test {len(test)} (actors {sorted({c.actor for c in test})})",
        flush=True,
    )
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
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch + 10, pct_start=0.15)
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
        + (f" + {'/'.join(fc.extras)}" if fc.extras else "")
        + " frames → Conv1D×2 + LSTM×2 (as designed)",
        "command": record_command(),
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


def main(args: argparse.Namespace) -> dict:
    """``emotune train speech [--variant whisper|whisperN]``: the options given on the command line over the variant's config."""
    if args.variant and args.variant.startswith("whisper"):
        cfg = config_from_args(WhisperTrainConfig(), args)
        if (blocks := parse_variant(args.variant)) is not None:
            cfg = replace(cfg, blocks=blocks, layers=(blocks,))
        report = train_whisper(cfg)
        cv = report["cv_summary"]["accuracy"]
        print(
            f"{cfg.n_folds}-fold actor cross-validation: accuracy {cv['mean']:.4f} ± {cv['std']:.4f} (epoch {report['best_epoch']}); "
            f"served head trained on every actor; report in {cfg.out_dir}"
        )
        return report
    cfg = config_from_args(SpeechTrainConfig(), args)
    report = train_speech(cfg)
    test = report["test_pytorch_fp32"]
    print(
        f"held-out actors {list(cfg.test_actors)}: accuracy {test['accuracy']:.4f}  macro-F1 {test['macro_f1']:.4f}  "
        f"(best epoch {report['best_epoch']}); report in {cfg.out_dir}"
    )
    return report
