"""Clip-level calibration of speech (model.json ``"level": "clip"``, ``"window_exponent"``): the fit matches what the
gateway applies, nested cross-fitting over groups, and the noise floor of ECE."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.model_info import ModelInfo
from gateway.postprocessing import calibrate, clip_answer
from training.calibration import (
    calibration_summary,
    clip_scaler,
    fit_window_exponent,
    group_cross_fitted,
    noise_floor,
    rows_scaler,
    windows_scaler,
)


def _windows(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2, (9, 4))
    return np.exp(logits) / np.exp(logits).sum(1, keepdims=True), np.array([0, 0, 0, 1, 2, 2, 3, 3, 3])


def test_clip_scaler_is_what_the_gateway_serves():
    windows, owner = _windows()
    for t, exponent in ((0.7, 0.0), (1.0, 0.25), (1.6, 0.5)):
        fitted = clip_scaler(windows, owner, 4, exponent)(t)
        served = np.stack([clip_answer(windows[owner == c], t, "clip", exponent) for c in range(4)])
        np.testing.assert_allclose(fitted, served, atol=1e-6)


def test_clip_level_keeps_the_mean_answer_and_sharpens_with_more_windows():
    windows, owner = _windows(5)
    clip = windows[owner == 2]
    assert np.argmax(clip_answer(clip, 0.8, "clip", 0.3)) == np.argmax(clip.mean(0))
    three = np.tile(clip.mean(0), (3, 1))  # three windows that agree
    assert clip_answer(three, 0.8, "clip", 0.3).max() > clip_answer(three[:1], 0.8, "clip", 0.3).max()
    np.testing.assert_allclose(clip_answer(three, 0.8, "clip", 0.0), clip_answer(three[:1], 0.8, "clip", 0.0), atol=1e-6)


def test_fitted_window_exponent_recovers_how_windows_add_up():
    """Clips of m independent windows whose mean is right more often than it says: the true exponent is 0.5 here."""
    rng = np.random.default_rng(6)
    probs, owner, labels = [], [], []
    for clip in range(1500):
        m = int(rng.integers(1, 9))
        truth = rng.normal(0, 1.5, 4)
        label = rng.choice(4, p=np.exp(truth * m**0.5) / np.exp(truth * m**0.5).sum())
        p = np.exp(truth) / np.exp(truth).sum()
        probs += [p] * m
        owner += [clip] * m
        labels.append(label)
    exponent = fit_window_exponent(np.array(probs), np.array(owner), np.array(labels), 1.0)
    assert exponent == pytest.approx(0.5, abs=0.12)


def test_one_window_clips_are_calibrated_alike_at_either_level():
    windows, _ = _windows(1)
    one_each = np.arange(len(windows))
    np.testing.assert_allclose(clip_scaler(windows, one_each, len(windows))(0.8), windows_scaler(windows, one_each, len(windows))(0.8), atol=1e-6)
    np.testing.assert_allclose(clip_answer(windows[:1], 0.8, "clip", 0.3), calibrate(windows[:1], 0.8)[0], atol=1e-6)


def test_window_level_is_the_mean_of_calibrated_windows_and_unknown_levels_are_refused():
    windows, _ = _windows(2)
    np.testing.assert_allclose(clip_answer(windows, 0.8), calibrate(windows, 0.8).mean(0), atol=1e-7)
    with pytest.raises(ValueError, match="level"):
        clip_answer(windows, 0.8, "frame")


def test_model_info_reads_the_level_and_defaults_to_window(tmp_path):
    base = '{"name": "m", "labels": ["a"], "inputs": [], "outputs": [], "max_batch_size": 1'
    (tmp_path / "model.json").write_text(base + ', "calibration": {"temperature": 0.8, "level": "clip"}}')
    assert ModelInfo.load(tmp_path).calibration_level == "clip" and ModelInfo.load(tmp_path).temperature == 0.8
    (tmp_path / "model.json").write_text(base + ', "calibration": {"temperature": 0.8}}')
    assert ModelInfo.load(tmp_path).calibration_level == "window"


def _overconfident(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 3, (n, 5))
    truth = np.exp(logits / 2) / np.exp(logits / 2).sum(1, keepdims=True)
    labels = np.array([rng.choice(5, p=p) for p in truth])
    return np.exp(logits) / np.exp(logits).sum(1, keepdims=True), labels


def test_group_cross_fitting_scores_each_group_with_a_temperature_fitted_on_the_others():
    probs, labels = _overconfident(3000, 3)
    groups = np.arange(3000) % 5
    nested = group_cross_fitted(lambda rows: rows_scaler(probs[rows]), labels, groups)
    assert len(nested["per_fold"]) == 5 and sum(r["rows"] for r in nested["per_fold"]) == 3000
    assert all(r["temperature"] == pytest.approx(2.0, rel=0.15) for r in nested["per_fold"])
    assert all(r["ece_after"] < r["ece_before"] for r in nested["per_fold"])
    assert nested["pooled_ece_after"] < 2 * nested["pooled_noise_floor"]["p95"]
    summary = calibration_summary(lambda rows: rows_scaler(probs[rows]), labels, "synthetic", groups, {"level": "clip", "window_exponent": 0.2})
    assert (
        summary["level"] == "clip"
        and summary["window_exponent"] == 0.2
        and summary["cross_fitted_actor_folds"]["pooled_ece_after"] == nested["pooled_ece_after"]
    )


def test_noise_floor_shrinks_with_more_rows():
    rng = np.random.default_rng(4)
    confidence = rng.uniform(0.3, 1.0, 4000)
    probs = np.stack([confidence, 1 - confidence], 1)
    small, large = noise_floor(probs[:250], draws=200), noise_floor(probs, draws=200)
    assert large["mean"] < small["mean"] < small["p95"]
    assert small["mean"] == pytest.approx(4 * large["mean"], rel=0.35)  # about 1/sqrt(rows): 16 times the rows
