"""Model outputs → the response shape of the original design: emotion, confidence, per-class scores."""

from __future__ import annotations

import numpy as np


def to_emotion(probabilities: np.ndarray, labels: list[str]) -> dict:
    """One row of class probabilities → ``{"emotion", "confidence", "scores"}``."""
    best = int(np.argmax(probabilities))
    return {
        "emotion": labels[best],
        "confidence": round(float(probabilities[best]), 4),
        "scores": {label: round(float(p), 4) for label, p in zip(labels, probabilities)},
    }
