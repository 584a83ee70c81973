"""Temperature scaling of served probabilities, fitted the way the gateway applies it (``gateway.postprocessing.calibrate``:
``softmax(log p / T)``; speech clips: ``clip_answer``), with expected calibration error, its noise floor, cross-fitting
over groups (speech: actor folds) and reliability diagrams before and after."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy.optimize import minimize_scalar

from gateway.postprocessing import calibrate

Scaler = Callable[[float], np.ndarray]  # temperature → calibrated probabilities of the scored rows


def rows_scaler(probabilities: np.ndarray) -> Scaler:
    """One answer per row (text, face)."""
    return lambda t: calibrate(probabilities, t)


def windows_scaler(window_probabilities: np.ndarray, owner: np.ndarray, n_clips: int) -> Scaler:
    """Speech: the gateway calibrates each window's answer, then averages a clip's windows."""

    def scaled(t: float) -> np.ndarray:
        out = np.zeros((n_clips, window_probabilities.shape[1]))
        np.add.at(out, owner, calibrate(window_probabilities, t))
        return out / np.bincount(owner, minlength=n_clips)[:, None]

    return scaled


def clip_scaler(window_probabilities: np.ndarray, owner: np.ndarray, n_clips: int, window_exponent: float = 0.0) -> Scaler:
    """Speech with ``"level": "clip"``: a clip's windows are averaged, then calibrated once at ``T / m^window_exponent``
    for its ``m`` windows (``gateway.postprocessing.clip_answer``). One window each: the same as ``windows_scaler``."""
    count = np.bincount(owner, minlength=n_clips)
    mean = np.zeros((n_clips, window_probabilities.shape[1]))
    np.add.at(mean, owner, window_probabilities.astype(np.float64))
    log_mean = np.log(np.clip(mean / count[:, None], 1e-12, None)) * count[:, None] ** window_exponent

    def scaled(t: float) -> np.ndarray:
        logits = log_mean / t
        logits -= logits.max(axis=1, keepdims=True)
        out = np.exp(logits)
        return out / out.sum(axis=1, keepdims=True)

    return scaled


def fit_window_exponent(window_probabilities: np.ndarray, owner: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    """The window exponent that minimises the NLL of clips of many windows at a given T (``clip_scaler``)."""
    n = len(labels)
    result = minimize_scalar(
        lambda b: nll(clip_scaler(window_probabilities, owner, n, b)(temperature), labels),
        bounds=(-1.0, 2.0),
        method="bounded",
        options={"xatol": 1e-4},
    )
    return round(float(result.x), 4)


def nll(probabilities: np.ndarray, labels: np.ndarray) -> float:
    return float(-np.log(np.clip(probabilities[np.arange(len(labels)), labels], 1e-12, None)).mean())


def fit_temperature(scaler: Scaler, labels: np.ndarray) -> float:
    """The T that minimises the negative log-likelihood of the calibrated answers (searched over log T in [1/20, 20])."""
    result = minimize_scalar(lambda log_t: nll(scaler(float(np.exp(log_t))), labels), bounds=(-3.0, 3.0), method="bounded", options={"xatol": 1e-4})
    return round(float(np.exp(result.x)), 4)


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """Top-label ECE over ``bins`` equal-width confidence bins: Σ (bin share) × |accuracy − mean confidence|."""
    confidence, correct = probabilities.max(1), probabilities.argmax(1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            ece += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return round(float(ece), 4)


def noise_floor(probabilities: np.ndarray, bins: int = 15, draws: int = 1000, seed: int = 0) -> dict:
    """The ECE a perfectly calibrated model with these confidences still shows on this many rows (each row right with
    probability its confidence, drawn ``draws`` times): below its mean a measured ECE says nothing more."""
    confidence = probabilities.max(1)
    rng = np.random.default_rng(seed)
    pairs = np.stack([confidence, 1 - confidence], 1)
    values = np.array([expected_calibration_error(pairs, (rng.random(len(confidence)) >= confidence).astype(np.int64), bins) for _ in range(draws)])
    return {"rows": int(len(confidence)), "mean": round(float(values.mean()), 4), "p95": round(float(np.percentile(values, 95)), 4)}


def group_cross_fitted(scaler_of: Callable[[np.ndarray], Scaler], labels: np.ndarray, groups: np.ndarray, what: str = "fold") -> dict:
    """Nested by group: T fitted on every other group's rows, ECE scored on the group's own (speech: actor folds, so no
    clip is scored by a T fitted on its speakers). Per group (mean ± std, with each group's noise floor) and pooled over
    all the held-out answers (one ECE over every row, each calibrated without its group)."""
    pooled = np.zeros((len(labels), int(labels.max()) + 1))
    rows = []
    for g in np.unique(groups):
        fit_rows, score_rows = np.flatnonzero(groups != g), np.flatnonzero(groups == g)
        t = fit_temperature(scaler_of(fit_rows), labels[fit_rows])
        before, after = scaler_of(score_rows)(1.0), scaler_of(score_rows)(t)
        pooled[score_rows] = after
        rows.append(
            {
                what: int(g),
                "temperature": t,
                "rows": int(len(score_rows)),
                "ece_before": expected_calibration_error(before, labels[score_rows]),
                "ece_after": expected_calibration_error(after, labels[score_rows]),
                "noise_floor": noise_floor(after, draws=300)["mean"],
            }
        )
    after = np.array([r["ece_after"] for r in rows])
    return {
        "per_" + what: rows,
        "ece_after_mean": round(float(after.mean()), 4),
        "ece_after_std": round(float(after.std()), 4),
        "noise_floor_per_" + what: round(float(np.mean([r["noise_floor"] for r in rows])), 4),
        "pooled_ece_after": expected_calibration_error(pooled, labels),
        "pooled_nll_after": round(nll(pooled, labels), 4),
        "pooled_noise_floor": noise_floor(pooled),
    }


def halves(labels: np.ndarray, seed: int = 13) -> tuple[np.ndarray, np.ndarray]:
    """Two stratified halves of the rows, for cross-fitting."""
    rng = np.random.default_rng(seed)
    first = np.concatenate([rng.permutation(np.flatnonzero(labels == c))[: int(np.sum(labels == c)) // 2] for c in np.unique(labels)])
    mask = np.zeros(len(labels), bool)
    mask[first] = True
    return np.flatnonzero(mask), np.flatnonzero(~mask)


def calibration_summary(
    scaler_of: Callable[[np.ndarray], Scaler], labels: np.ndarray, data: str, groups: np.ndarray | None = None, serving: dict | None = None
) -> dict:
    """Fit T on all rows (what ships), and cross-fitted: T fitted on one half, ECE scored on the other, both ways; with
    ``groups`` (speech: each clip's actor fold) also nested by group (``group_cross_fitted``), and the noise floor of ECE.
    ``serving`` (speech: ``level``, ``window_exponent``) ships beside T in model.json's calibration block.

    ``scaler_of(rows)`` gives the scaler of a subset of rows (an index array into ``labels``)."""
    everything = np.arange(len(labels))
    t = fit_temperature(scaler_of(everything), labels)
    before, after = scaler_of(everything)(1.0), scaler_of(everything)(t)
    cross = []
    for fit_rows, score_rows in (halves(labels), halves(labels)[::-1]):
        t_half = fit_temperature(scaler_of(fit_rows), labels[fit_rows])
        score = scaler_of(score_rows)
        cross.append(
            {
                "temperature": t_half,
                "ece_before": expected_calibration_error(score(1.0), labels[score_rows]),
                "ece_after": expected_calibration_error(score(t_half), labels[score_rows]),
                "rows": int(len(score_rows)),
            }
        )
    return {
        "data": data,
        "rows": int(len(labels)),
        "temperature": t,
        **(serving or {}),
        "bins": 15,
        "ece_before": expected_calibration_error(before, labels),
        "ece_after": expected_calibration_error(after, labels),
        "nll_before": round(nll(before, labels), 4),
        "nll_after": round(nll(after, labels), 4),
        "noise_floor": noise_floor(after),
        "cross_fitted_halves": cross,
        **({"cross_fitted_actor_folds": group_cross_fitted(scaler_of, labels, groups)} if groups is not None else {}),
    }


def evaluate_temperature(probabilities: np.ndarray, labels: np.ndarray, t: float, data: str) -> dict:
    """ECE and NLL of already-served answers at a shipped T, on other data (e.g. a test split, only reported)."""
    after = calibrate(probabilities, t)
    return {
        "data": data,
        "rows": int(len(labels)),
        "temperature": t,
        "ece_before": expected_calibration_error(probabilities, labels),
        "ece_after": expected_calibration_error(after, labels),
        "nll_before": round(nll(probabilities, labels), 4),
        "nll_after": round(nll(after, labels), 4),
    }


def reliability_diagram(before: np.ndarray, after: np.ndarray, labels: np.ndarray, t: float, title: str, path: Path, bins: int = 15) -> Path:
    """Accuracy against confidence per bin, before and after the temperature (bar width = the bin; dots = rows' share)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 4.2), sharey=True)
    edges = np.linspace(0.0, 1.0, bins + 1)
    for ax, probs, name in ((axes[0], before, "as trained (T = 1)"), (axes[1], after, f"calibrated (T = {t:.3g})")):
        confidence, correct = probs.max(1), probs.argmax(1) == labels
        which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
        acc = np.array([correct[which == b].mean() if (which == b).any() else 0.0 for b in range(bins)])
        share = np.array([(which == b).mean() for b in range(bins)])
        ax.bar(edges[:-1], acc, width=1 / bins, align="edge", edgecolor="black", color="#4c72b0", alpha=0.8, label="accuracy")
        ax.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
        ax.scatter(edges[:-1] + 0.5 / bins, share, color="#dd8452", s=12, zorder=3, label="share of rows")
        ax.set_title(f"{name}\nECE {expected_calibration_error(probs, labels, bins):.4f}")
        ax.set_xlabel("confidence")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
    axes[0].set_ylabel("accuracy")
    axes[0].legend(loc="upper left", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
