"""Temperature scaling fitted the way the gateway applies it, and the calibration error it is judged by."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.postprocessing import calibrate
from training.calibration import calibration_summary, expected_calibration_error, fit_temperature, rows_scaler, windows_scaler


def _overconfident(n: int = 4000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Answers whose true temperature is 2: softmax(z) is what the model says, softmax(z / 2) is how often it is right."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 3, (n, 5))
    truth = np.exp(logits / 2) / np.exp(logits / 2).sum(1, keepdims=True)
    labels = np.array([rng.choice(5, p=p) for p in truth])
    return np.exp(logits) / np.exp(logits).sum(1, keepdims=True), labels


def test_fitted_temperature_recovers_the_true_one_and_lowers_ece():
    probs, labels = _overconfident()
    t = fit_temperature(rows_scaler(probs), labels)
    assert t == pytest.approx(2.0, rel=0.1)
    assert expected_calibration_error(calibrate(probs, t), labels) < expected_calibration_error(probs, labels) / 2


def test_ece_of_a_calibrated_and_of_a_wrong_model():
    labels = np.zeros(100, dtype=np.int64)
    sure_and_right = np.tile([1.0, 0.0], (100, 1))
    assert expected_calibration_error(sure_and_right, labels) == 0.0
    assert expected_calibration_error(np.tile([0.0, 1.0], (100, 1)), labels) == 1.0


def test_windows_scaler_calibrates_each_window_then_averages_per_clip():
    windows = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]])
    owner = np.array([0, 0, 1])
    got = windows_scaler(windows, owner, 2)(2.0)
    scaled = calibrate(windows, 2.0)
    np.testing.assert_allclose(got, [scaled[:2].mean(0), scaled[2]], rtol=1e-6)


def test_summary_cross_fits_on_halves():
    probs, labels = _overconfident(2000, seed=1)
    summary = calibration_summary(lambda rows: rows_scaler(probs[rows]), labels, "synthetic")
    assert len(summary["cross_fitted_halves"]) == 2 and sum(h["rows"] for h in summary["cross_fitted_halves"]) == 2000
    assert all(h["ece_after"] < h["ece_before"] for h in summary["cross_fitted_halves"])
