"""The one training loop: seeds, progress bars, early stopping on validation macro-F1, best checkpoint."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import f1_score
from tqdm import tqdm

Batch = dict[str, torch.Tensor]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class FitResult:
    best_epoch: int
    best_val_f1: float
    history: list[dict] = field(default_factory=list)


def predict(model: torch.nn.Module, batches: Iterable[Batch], device: str, desc: str = "predict") -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities and labels over ``batches`` (each a dict with ``labels`` and model inputs)."""
    model.eval()
    probs, labels = [], []
    with torch.inference_mode():
        for batch in tqdm(batches, desc=desc, leave=False):
            batch = {k: v.to(device) for k, v in batch.items()}
            y = batch.pop("labels")
            probs.append(torch.softmax(model(**batch), dim=-1).float().cpu().numpy())
            labels.append(y.cpu().numpy())
    return np.concatenate(probs), np.concatenate(labels)


def fit(
    model: torch.nn.Module,
    train_batches: Callable[[int], Iterable[Batch]],
    val_batches: Callable[[], Iterable[Batch]] | None,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    epochs: int,
    patience: int,
    checkpoint: Path,
    device: str = "cpu",
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    max_grad_norm: float | None = 1.0,
    val_reduce: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None,
    resumed: list[dict] | None = None,
    on_epoch: Callable[[list[dict]], None] | None = None,
) -> FitResult:
    """Train for up to ``epochs``; keep the weights with the best validation macro-F1; stop after ``patience`` epochs without gain.

    ``train_batches(epoch)`` yields the epoch's batches (so the caller controls shuffling and augmentation).
    ``val_batches=None`` trains every epoch and keeps the last weights (a count chosen elsewhere, e.g. by cross-validation).
    ``val_reduce`` maps the validation rows' (probabilities, labels) to the unit that is scored (speech: windows → clips).
    ``resumed``: the history of the epochs already trained (their best weights already at ``checkpoint``, the model
    holding the last epoch's); training goes on from the next epoch and the best is chosen over all of them.
    ``on_epoch(history)`` runs after each epoch with validation, once ``last.pt`` (that epoch's weights, beside
    ``checkpoint``) is written: a run stopped between epochs can be resumed from them.
    """
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    model.to(device)
    result = FitResult(best_epoch=-1, best_val_f1=-1.0, history=list(resumed or []))
    for row in result.history:
        if row["val_macro_f1"] > result.best_val_f1:
            result.best_epoch, result.best_val_f1 = row["epoch"], row["val_macro_f1"]
    stale = len(result.history) - result.best_epoch if result.history else 0
    for epoch in range(len(result.history) + 1, epochs + 1):
        model.train()
        started, total, seen = time.perf_counter(), 0.0, 0
        bar = tqdm(train_batches(epoch), desc=f"epoch {epoch}/{epochs}")
        for batch in bar:
            batch = {k: v.to(device) for k, v in batch.items()}
            y = batch.pop("labels")
            loss = loss_fn(model(**batch), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if max_grad_norm:
                torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            total += loss.item() * len(y)
            seen += len(y)
            bar.set_postfix(loss=f"{total / seen:.4f}")
        row = {"epoch": epoch, "train_loss": round(total / max(seen, 1), 4), "seconds": round(time.perf_counter() - started, 1)}
        if val_batches is None:
            result.history.append(row)
            result.best_epoch = epoch
            continue
        probs, labels = predict(model, val_batches(), device, desc="validate")
        if val_reduce is not None:
            probs, labels = val_reduce(probs, labels)
        preds = probs.argmax(1)
        val_f1 = float(f1_score(labels, preds, average="macro"))
        val_acc = float((preds == labels).mean())
        val_loss = float(-np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, None)).mean())
        row.update(
            val_loss=round(val_loss, 4),
            val_accuracy=round(val_acc, 4),
            val_macro_f1=round(val_f1, 4),
            seconds=round(time.perf_counter() - started, 1),
        )
        result.history.append(row)
        if on_epoch is not None:
            torch.save(model.state_dict(), checkpoint.with_name("last.pt"))
            on_epoch(result.history)
        tqdm.write(f"epoch {epoch}: loss {row['train_loss']:.4f}  val loss {val_loss:.4f}  val acc {val_acc:.4f}  val macro-F1 {val_f1:.4f}")
        if val_f1 > result.best_val_f1:
            result.best_epoch, result.best_val_f1, stale = epoch, val_f1, 0
            torch.save(model.state_dict(), checkpoint)
        else:
            stale += 1
            if stale >= patience:
                tqdm.write(f"early stop: no gain in {patience} epochs")
                break
    if val_batches is None:
        torch.save(model.state_dict(), checkpoint)
    model.load_state_dict(torch.load(checkpoint, map_location=device, weights_only=True))
    return result
