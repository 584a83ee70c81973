"""Model outputs → the response shape of the original design: emotion, confidence, per-class scores."""

from __future__ import annotations

import numpy as np


def calibrate(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """Temperature scaling of served probabilities (``softmax(log p / T)``, computed as ``p^(1/T)`` normalised: the same
    values, half the NumPy calls), so that a 0.9 from one model means what a 0.9 from another means before ``/recommend``
    weighs them; T comes with the model and is fitted on its validation data."""
    if temperature == 1.0:
        return probabilities
    scaled = np.power(np.maximum(probabilities, 1e-12, dtype=np.float64), 1.0 / temperature)
    return (scaled / scaled.sum(axis=-1, keepdims=True)).astype(np.float32)


def clip_answer(window_probabilities: np.ndarray, temperature: float, level: str = "window", window_exponent: float = 0.0) -> np.ndarray:
    """A speech clip's answer from its ``m`` windows' uncalibrated answers, as model.json's ``calibration`` says.
    "window": each window calibrated, then their mean. "clip": the windows' mean, calibrated once with a temperature that
    falls with the window count, ``softmax(m^window_exponent · log(mean_w p_w) / T)``: the same argmax as the mean, and for
    one window the same as "window"; the mean of many windows is underconfident without it (reports/speech_emotion/CALIBRATION.md)."""
    if level == "window":
        return calibrate(window_probabilities, temperature).mean(axis=0)
    if level != "clip":
        raise ValueError(f"unknown calibration level {level!r}: 'window' or 'clip'")
    mean = window_probabilities.astype(np.float64).mean(axis=0)
    logits = np.log(np.clip(mean, 1e-12, None)) * len(window_probabilities) ** window_exponent / temperature
    scaled = np.exp(logits - logits.max())
    return (scaled / scaled.sum()).astype(np.float32)


def to_emotion(probabilities: np.ndarray, labels: list[str]) -> dict:
    """One row of class probabilities → ``{"emotion", "confidence", "scores"}``."""
    best = int(np.argmax(probabilities))
    return {
        "emotion": labels[best],
        "confidence": round(float(probabilities[best]), 4),
        "scores": {label: round(float(p), 4) for label, p in zip(labels, probabilities)},
    }
