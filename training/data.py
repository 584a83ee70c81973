"""Dataset readers: files on disk → (inputs, label index) with the model's own label list."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DAIR_AI_LABELS = ["sadness", "joy", "love", "anger", "fear", "surprise"]


@dataclass
class TextSplit:
    texts: list[str]
    labels: np.ndarray


def text_label_names(fold_love: bool) -> list[str]:
    """The designed five labels, or all six when love is kept."""
    names = ["joy", "sadness", "anger", "fear", "surprise"]
    return names if fold_love else names + ["love"]


def read_text_split(path: Path, label_names: list[str], fold_love: bool) -> TextSplit:
    texts, labels = [], []
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            name = DAIR_AI_LABELS[int(row["label"])]
            if name == "love" and fold_love:
                name = "joy"
            texts.append(row["text"])
            labels.append(label_names.index(name))
    return TextSplit(texts, np.asarray(labels, dtype=np.int64))


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val) with ``fraction`` of each class in val."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_val = max(1, int(round(len(idx) * fraction)))
        val.extend(idx[:n_val])
        train.extend(idx[n_val:])
    return np.sort(np.array(train)), np.sort(np.array(val))


def subset(n_rows: int, limit: int | None, labels: np.ndarray, seed: int) -> np.ndarray:
    """A stratified subset of at most ``limit`` rows (all rows when no limit)."""
    if not limit or limit >= n_rows:
        return np.arange(n_rows)
    _, keep = stratified_split(labels, limit / n_rows, seed)
    return keep
