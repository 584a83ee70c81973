"""Speech model export: checkpoint → ONNX (dynamic batch and frame axes, parity-checked) → variants → repository + report.

- The designed CNN+LSTM (``runs/speech``) is small (≈0.3 M parameters, ~1 MB): both flavours serve its FP32 graph,
  scored on its run's held-out actors.
- The Whisper variant (``runs/speech_whisper``: Whisper-base conv stem + first blocks + a head over their pooled
  layers, trained on every actor) is exported FP32 for the parity check, then INT8 (dynamic, MatMuls only, per channel)
  for the python flavour on CPU and FP16 for the onnxruntime flavour on GPU. Its held-out figure is cross-validated as
  served: each fold's head is exported and quantized the same way and scored on its own actors, and the temperature
  is fitted on those out-of-fold INT8 answers. Both served files then get Whisper's log-mel front end joined in front
  (``export.speech_front_end``): the gateway sends 16 kHz sample windows and the features are computed in Triton.

The normalization statistics travel beside the model as ``feature_stats.json`` and the feature settings inside
``model.json``. Every export also files its report under ``reports/speech_emotion/variants/<variant>/``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from export.onnx import export_onnx, run, session
from export.pipeline import ExportOptions, ModelExport, run_export, write_model_report
from export.quantize import to_fp16
from export.repository import ModelSpec
from export.speech_front_end import export_front_end, join_front_end, with_audio_input
from gateway.model_info import TensorSpec
from gateway.preprocessing.audio import FeatureStats, SpeechFeatureConfig, speech_windows
from training.calibration import calibration_summary, clip_scaler, reliability_diagram
from training.ravdess import Clip, cached_features, clip_probabilities, read_ravdess
from training.report import classification_metrics, write_report
from training.speech import build_model
from training.speech_whisper import WhisperEmotionModel, load_whisper_run, window_lengths

MODEL_NAME = "speech_emotion"
SERVED_INT8 = "onnx_int8 (python flavour, CPU)"
FP16 = "onnx_fp16 (onnxruntime flavour, GPU)"
BEFORE = "served before (2 blocks, last layer), onnx_int8"
# softmax(m^WINDOW_EXPONENT · log(mean_w p_w) / T) for a clip of m windows: the mean of calibrated windows is underconfident on
# longer clips. RAVDESS clips are one window each (26 of 1,040 have two), so the exponent is fitted by `python -m bench.speech_calibration`
# on utterances joined into longer clips (reports/speech_emotion/CALIBRATION.md); T is fitted here.
CALIBRATION_LEVEL, WINDOW_EXPONENT = "clip", 0.24


class _Probabilities(torch.nn.Module):
    """The served graph ends in softmax: clients get probabilities."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, features, lengths=None):
        logits = self.model(features) if lengths is None else self.model(features, lengths)
        return torch.softmax(logits, dim=-1)


def quantize_matmuls_int8(src: Path, dst: Path) -> Path:
    """Dynamic INT8 of the MatMul weights only (per channel, reduced range). Measured on held-out actors with the
    2-block model: quantizing the conv stem too (``export.quantize.quantize_int8``) cost 3–4 points of accuracy
    (0.721 → 0.683); MatMuls only kept 0.716."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(src),
        str(dst),
        op_types_to_quantize=["MatMul"],
        weight_type=QuantType.QInt8,
        per_channel=True,
        reduce_range=True,
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )
    return dst


def _feeds(windows: np.ndarray, lengths: np.ndarray | None) -> dict[str, np.ndarray]:
    return {"features": windows} if lengths is None else {"features": windows, "lengths": lengths}


def _axes(whisper: bool) -> dict[str, dict[int, str]]:
    axes = {"features": {0: "batch", 1: "frames"}, "probabilities": {0: "batch"}}
    return axes | ({"lengths": {0: "batch"}} if whisper else {})


def _window_probs(path: Path, windows: np.ndarray, lengths: np.ndarray | None) -> np.ndarray:
    sess = session(path)
    return np.concatenate(
        [run(sess, _feeds(windows[i : i + 64], None if lengths is None else lengths[i : i + 64])) for i in range(0, len(windows), 64)]
    )


def _latency_ms(paths: dict[str, Path], window: np.ndarray, length: np.ndarray | None, repeats: int = 30) -> dict[str, float]:
    """Median ONNX Runtime time for one 3 s window (batch 1, 2 threads) of each file, the files taking turns so that
    a shared, noisy CPU slows them alike: compare the ratios, not the absolute times."""
    sessions = {name: session(path) for name, path in paths.items()}
    feeds = _feeds(window, length)
    times: dict[str, list[float]] = {name: [] for name in paths}
    for sess in sessions.values():
        run(sess, feeds)
    for _ in range(repeats):
        for name, sess in sessions.items():
            started = time.perf_counter()
            run(sess, feeds)
            times[name].append(time.perf_counter() - started)
    return {name: round(1000 * float(np.median(t)), 2) for name, t in times.items()}


class Windows:
    """The served windows of some clips: (windows, lengths, window → clip)."""

    def __init__(self, clips: list[Clip], config: SpeechFeatureConfig, stats: FeatureStats, cache: Path, seed: int):
        raw = cached_features(clips, 0, config, cache, seed)
        rows, lengths, owner = [], [], []
        for i, f in enumerate(raw):
            w, _ = speech_windows(stats.normalize(f), config)
            rows.append(w)
            lengths.append(window_lengths(f, len(w), config))
            owner += [i] * len(w)
        self.windows, self.lengths, self.owner = np.concatenate(rows), np.concatenate(lengths), np.asarray(owner)
        self.labels = np.asarray([c.label for c in clips], dtype=np.int64)

    def of(self, clip_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Windows, lengths and owners (re-indexed to positions in ``clip_rows``) of some clips."""
        position = np.full(len(self.labels), -1)
        position[clip_rows] = np.arange(len(clip_rows))
        keep = position[self.owner] >= 0
        return self.windows[keep], self.lengths[keep], position[self.owner[keep]]


def speech_model_spec(meta: dict, config: SpeechFeatureConfig, whisper: bool) -> ModelSpec:
    width = config.window_frames
    inputs = [TensorSpec("features", "float32", [-1, config.dim])]
    warmup, trt_max = {"features": [width, config.dim]}, {"features": [2 * width, config.dim]}
    if whisper:
        inputs.append(TensorSpec("lengths", "int64", [1]))
        warmup["lengths"], trt_max["lengths"] = [1], [1]
    return ModelSpec(
        name=MODEL_NAME,
        labels=meta["labels"],
        inputs=inputs,
        outputs=[TensorSpec("probabilities", "float32", [len(meta["labels"])])],
        max_batch_size=64,  # a 60 s clip is 40 windows of 3 s every 1.5 s: one request
        preferred_batch_sizes=[8, 16, 32, 64],
        warmup_dims=warmup,
        trt_max_dims=trt_max,
        preprocessing={
            "variant": meta["variant"],
            "features": config.to_dict(),
            "feature_stats": "feature_stats.json",
            "window_seconds": config.window_seconds,
            "window_hop_seconds": config.window_hop_frames * config.hop_length / config.sample_rate,
        },
    )


def export(options: ExportOptions) -> dict:
    meta = json.loads((options.run_dir / "train_config.json").read_text())
    return (_export_whisper if meta["variant"].startswith("whisper") else _export_designed)(options, meta)


def _export_designed(options: ExportOptions, meta: dict) -> dict:
    """The CNN+LSTM: FP32 in both flavours, scored on its run's held-out actors."""
    run_dir, labels = options.run_dir, meta["labels"]
    config = SpeechFeatureConfig.from_dict(meta["features"])
    model = build_model(meta["variant"], config.dim, len(labels))
    model.load_state_dict(torch.load(run_dir / "model.pt", map_location="cpu", weights_only=True))
    served = _Probabilities(model.eval()).eval()
    stats = FeatureStats.from_json(run_dir / "feature_stats.json")
    wanted = set(meta["test_files"])
    test = [c for c in read_ravdess(options.data("ravdess"), labels) if c.path.name in wanted][: options.test_limit or None]
    data = Windows(test, config, stats, run_dir / "cache", int(meta.get("seed", 13)))
    windows = data.windows
    latency: dict[str, float] = {}

    def evaluate(name: str, path: Path) -> dict:
        latency.update(_latency_ms({name: path}, windows[:1], None))
        return classification_metrics(data.labels, clip_probabilities(_window_probs(path, windows, None), data.owner, len(test)).argmax(1), labels)

    longer = np.concatenate([windows[:4], windows[4:8]], axis=1)
    description = ModelExport(
        spec=speech_model_spec(meta, config, whisper=False),
        served=served,
        example={"features": torch.from_numpy(windows[:2])},
        dynamic_axes=_axes(False),
        parity_batches=[_feeds(windows[i : i + n], None) for i, n in [(0, 1), (1, 8), (9, 32)]]
        + [_feeds(longer, None), _feeds(windows[:4, :120], None)],
        variants=lambda fp32, work: {"onnx_fp32": fp32},
        flavours={"python": "onnx_fp32", "onnxruntime": "onnx_fp32"},
        evaluate=evaluate,
        files={"feature_stats.json": run_dir / "feature_stats.json"},
    )
    exported = run_export(description, options)
    train_report = json.loads((run_dir / "report.json").read_text())
    report = {
        **{k: v for k, v in train_report.items() if k not in ("test_pytorch_fp32", "command")},
        "train_command": train_report.get("command"),
        **exported.report(),
        "served_file": "onnx_fp32",
        "latency_ms_per_3s_window_ort_cpu_2_threads": latency,
        "test_pytorch_fp32": train_report["test_pytorch_fp32"],
        **{f"test_{name}": metrics for name, metrics in exported.metrics.items()},
    }
    reports = options.repository / "reports" / MODEL_NAME
    write_report(reports / "variants" / meta["variant"], f"speech_emotion {meta['variant']} on held-out actors", report, labels, "test_onnx_fp32")
    report["variants_side_by_side"] = _side_by_side(reports / "variants")
    write_model_report(
        options.repository, MODEL_NAME, f"speech_emotion on held-out actors (served: {meta['variant']}, onnx_fp32)", report, labels, "test_onnx_fp32"
    )
    print(
        f"parity {exported.parity:.2e}; held-out actors: accuracy {exported.metrics['onnx_fp32']['accuracy']:.4f}; "
        f"repository written to {options.repository}"
    )
    return report


def _export_whisper(options: ExportOptions, meta: dict) -> dict:
    run_dir, labels = options.run_dir, meta["labels"]
    model, _ = load_whisper_run(run_dir)
    served = _Probabilities(model).eval()
    config = SpeechFeatureConfig.from_dict(meta["features"])
    stats = FeatureStats.from_json(run_dir / "feature_stats.json")
    by_name = {c.path.name: c for c in read_ravdess(options.data("ravdess"), labels)}
    folds = [[by_name[n] for n in files] for files in meta["fold_files"]]
    if options.test_limit:  # smoke runs: a few clips of each fold
        folds = [f[: max(1, options.test_limit // len(folds))] for f in folds]
    clips = [c for fold in folds for c in fold]
    fold_of = np.concatenate([np.full(len(f), k) for k, f in enumerate(folds)])
    data = Windows(clips, config, stats, Path(meta.get("cache_dir") or run_dir / "cache"), int(meta["seed"]))
    reports = options.repository / "reports" / MODEL_NAME
    oof: dict[str, dict[str, np.ndarray]] = {}

    def variants(fp32: Path, work: Path) -> dict[str, Path]:
        return {"onnx_fp32": fp32, SERVED_INT8: quantize_matmuls_int8(fp32, work / "model_int8.onnx"), FP16: to_fp16(fp32, work / "model_fp16.onnx")}

    def evaluate(name: str, path: Path) -> dict | None:
        """Each file cross-validated as served (each fold's head, exported and converted the same way)."""
        if not oof:
            oof.update(_out_of_fold(run_dir, folds, fold_of, data))
        return classification_metrics(data.labels, oof[name]["clip_probs"].argmax(1), labels)

    def calibrate(_path: Path) -> dict:
        """T fitted on the folds' out-of-fold INT8 answers (the served head has no held-out actors of its own), at the
        clip level (``CALIBRATION_LEVEL``), and judged nested over the actor folds."""
        wp, owner, y = oof[SERVED_INT8]["window_probs"], oof[SERVED_INT8]["owner"], data.labels

        def scaler_of(rows: np.ndarray):
            position = np.full(len(y), -1)
            position[rows] = np.arange(len(rows))
            keep = position[owner] >= 0
            return clip_scaler(wp[keep], position[owner[keep]], len(rows), WINDOW_EXPONENT)

        summary = calibration_summary(
            scaler_of,
            y,
            f"out-of-fold INT8 answers of the {len(folds)} actor folds ({len(y)} clips)",
            groups=fold_of,
            serving={"level": CALIBRATION_LEVEL, "window_exponent": WINDOW_EXPONENT},
        )
        t = summary["temperature"]
        everything = scaler_of(np.arange(len(y)))
        reliability_diagram(everything(1.0), everything(t), y, t, "speech_emotion INT8, out-of-fold clips", reports / "reliability.png")
        return summary

    windows, lengths = data.windows, data.lengths
    longer = np.concatenate([windows[:4], windows[4:8]], axis=1)
    description = ModelExport(
        spec=with_audio_input(speech_model_spec(meta, config, whisper=True), config),
        served=served,
        example={"features": torch.from_numpy(windows[:2]), "lengths": torch.from_numpy(lengths[:2])},
        dynamic_axes=_axes(True),
        parity_batches=[_feeds(windows[i : i + n], lengths[i : i + n]) for i, n in [(0, 1), (1, 8), (9, 32)]]
        + [_feeds(longer, np.full((len(longer), 1), longer.shape[1], np.int64)), _feeds(windows[:4, :120], np.minimum(lengths[:4], 120))],
        variants=variants,
        flavours={"python": SERVED_INT8, "onnxruntime": FP16},
        evaluate=evaluate,
        calibrate=calibrate,
        join=lambda path, dst: join_front_end(front_end, path, dst),
        files={"feature_stats.json": run_dir / "feature_stats.json"},
    )
    front_end = export_front_end(config, stats, run_dir / "onnx" / "front_end.onnx")
    exported = run_export(description, options)
    before = _served_before(run_dir / "onnx" / "before", windows[:2], lengths[:2])
    latency = _latency_ms(
        {"onnx_fp32": exported.files["onnx_fp32"], SERVED_INT8: exported.files[SERVED_INT8], BEFORE: before}, windows[:1], lengths[:1]
    )
    latency["int8 ratio to the model served before"] = round(latency[SERVED_INT8] / latency[BEFORE], 2)
    served_probs = _window_probs(exported.files[SERVED_INT8], *data.of(np.arange(min(len(clips), 64)))[:2])
    fp32_probs = _window_probs(exported.files["onnx_fp32"], *data.of(np.arange(min(len(clips), 64)))[:2])

    train_report = json.loads((run_dir / "report.json").read_text())
    report = {
        **{k: v for k, v in train_report.items() if k not in ("cv_out_of_fold_pytorch_fp32", "command")},
        "train_command": train_report.get("command"),
        **exported.report(),
        "served_file": SERVED_INT8,
        "latency_ms_per_3s_window_ort_cpu_2_threads": latency,
        "served_int8_vs_fp32_windows": {
            "windows": int(len(served_probs)),
            "argmax_agreement": round(float((served_probs.argmax(1) == fp32_probs.argmax(1)).mean()), 4),
            "max_abs_diff": round(float(np.abs(served_probs - fp32_probs).max()), 4),
        },
        "cv_out_of_fold_pytorch_fp32": train_report["cv_out_of_fold_pytorch_fp32"],
        "cv_out_of_fold_onnx_fp32": exported.metrics["onnx_fp32"],
        f"cv_out_of_fold_{SERVED_INT8}": exported.metrics[SERVED_INT8],
        f"cv_out_of_fold_{FP16} (run here on CPU)": exported.metrics[FP16],
    }
    report = {"notes": whisper_notes(report), **report}
    matrix_key = f"cv_out_of_fold_{SERVED_INT8}"
    write_report(reports / "variants" / meta["variant"], f"speech_emotion {meta['variant']}, actor cross-validation", report, labels, matrix_key)
    write_model_report(
        options.repository,
        MODEL_NAME,
        f"speech_emotion, {len(folds)}-fold actor cross-validation (served: {meta['variant']}, {SERVED_INT8})",
        report,
        labels,
        matrix_key,
    )
    print(
        f"parity {exported.parity:.2e}; out-of-fold as served: accuracy {exported.metrics[SERVED_INT8]['accuracy']:.4f}; "
        f"temperature {exported.calibration['temperature']}; latency {latency}; repository written to {options.repository}"
    )
    return report


def _out_of_fold(run_dir: Path, folds: list[list[Clip]], fold_of: np.ndarray, data: Windows) -> dict[str, dict[str, np.ndarray]]:
    """Each fold's head exported (FP32), quantized (INT8) and halved (FP16, run here on CPU) like the served files, run on its
    own actors' windows."""
    found: dict[str, dict[str, list]] = {name: {"window_probs": [], "owner": []} for name in ("onnx_fp32", SERVED_INT8, FP16)}
    for k in range(len(folds)):
        fold_model, _ = load_whisper_run(run_dir, f"fold{k}.pt")
        rows = np.flatnonzero(fold_of == k)
        windows, lengths, owner = data.of(rows)
        example = {"features": torch.from_numpy(windows[:2]), "lengths": torch.from_numpy(lengths[:2])}
        fp32 = export_onnx(
            _Probabilities(fold_model).eval(), example, ["probabilities"], _axes(True), run_dir / "onnx" / "folds" / f"fold{k}_fp32.onnx"
        )
        for name, path in (
            ("onnx_fp32", fp32),
            (SERVED_INT8, quantize_matmuls_int8(fp32, fp32.with_name(f"fold{k}_int8.onnx"))),
            (FP16, to_fp16(fp32, fp32.with_name(f"fold{k}_fp16.onnx"))),
        ):
            found[name]["window_probs"].append(_window_probs(path, windows, lengths))
            found[name]["owner"].append(rows[owner])
    out = {}
    for name, parts in found.items():
        window_probs, owner = np.concatenate(parts["window_probs"]), np.concatenate(parts["owner"])
        out[name] = {"window_probs": window_probs, "owner": owner, "clip_probs": clip_probabilities(window_probs, owner, len(data.labels))}
    return out


def whisper_notes(report: dict) -> list[str]:
    """What the report says about the choice, from its own figures."""
    cv, served = report["cv_summary"]["accuracy"], report[f"cv_out_of_fold_{SERVED_INT8}"]
    notes = [
        f"Held-out figures are {len(report['cv_per_fold'])}-fold actor cross-validation over actors 1-20 (folds of 2 men + 2 women): "
        f"accuracy {cv['mean']:.4f} ± {cv['std']:.4f} across folds (PyTorch heads), {served['accuracy']:.4f} pooled over the "
        f"out-of-fold clips with each fold's head exported and quantized like the served file (FP32 ONNX: "
        f"{report['cv_out_of_fold_onnx_fp32']['accuracy']:.4f}). The served head itself is trained "
        f"on all 20 actors for the {report['best_epoch']} epochs where the folds' mean accuracy peaked, so no actor is left to score it on."
    ]
    sweep = report.get("sweep")
    if sweep:
        rows = "; ".join(
            f"{r['candidate']}: {r['accuracy']['mean']:.4f} ± {r['accuracy']['std']:.4f} (epoch {r['best_epoch']})" for r in sweep["candidates"]
        )
        notes.append(
            f"Chosen by `{sweep['command']}` (same folds, fold mean ± std at each candidate's best epoch): {rows}. "
            "The best that fits the repository's size budget is served; its lead over the others is within the fold spread, "
            "and choosing the candidate and the epoch on the same folds makes its figure slightly optimistic."
        )
    calibration = report.get("calibration")
    if calibration:
        halves = calibration["cross_fitted_halves"]
        level = calibration.get("level", "window")
        where = (
            "to the clip's mean at a temperature falling with its m windows, "
            f"softmax(m^{calibration.get('window_exponent', 0.0)} · log(mean_w p_w) / T)"
            if level == "clip"
            else "per window before the clip's mean"
        )
        note = (
            f"Temperature {calibration['temperature']} fitted (NLL) on the out-of-fold INT8 answers, applied {where} as the gateway does "
            f'(model.json calibration level "{level}"): ECE (15 bins) {calibration["ece_before"]:.4f} → {calibration["ece_after"]:.4f} '
            "in sample; cross-fitted on halves of the clips: "
            + ", ".join(f"{h['ece_before']:.4f} → {h['ece_after']:.4f} (T {h['temperature']})" for h in halves)
        )
        nested = calibration.get("cross_fitted_actor_folds")
        if nested:
            floor = calibration["noise_floor"]
            note += (
                f"; nested over the actor folds (T fitted on the other folds' actors): pooled over all {calibration['rows']} held-out clips "
                f"ECE {nested['pooled_ece_after']:.4f} (a perfectly calibrated model scores {nested['pooled_noise_floor']['mean']:.4f} on "
                f"this many clips, 95% under {nested['pooled_noise_floor']['p95']:.4f}), per fold {nested['ece_after_mean']:.4f} ± "
                f"{nested['ece_after_std']:.4f} (noise floor at a fold's {nested['per_fold'][0]['rows']} clips: "
                f"{nested['noise_floor_per_fold']:.4f}). "
                f"In sample the floor is {floor['mean']:.4f}. Candidates and longer clips: CALIBRATION.md"
            )
        notes.append(note + ".")
    return notes


def _served_before(work: Path, windows: np.ndarray, lengths: np.ndarray) -> Path:
    """The INT8 graph of the model served before (2 blocks, last layer), to time beside the new one (its head's values
    do not change its speed)."""
    before = WhisperEmotionModel(7, 2, (2,))
    before.encoder.load_whisper()
    fp32 = export_onnx(
        _Probabilities(before.eval()).eval(),
        {"features": torch.from_numpy(windows), "lengths": torch.from_numpy(lengths)},
        ["probabilities"],
        _axes(True),
        work / "model_fp32.onnx",
    )
    return quantize_matmuls_int8(fp32, work / "model_int8.onnx")


def _side_by_side(variants_dir: Path) -> list[dict]:
    """One row per exported variant: accuracy and macro-F1 of its served file on the held-out actors, size, speed."""
    rows = []
    for path in sorted(variants_dir.glob("*/report.json")):
        data = json.loads(path.read_text())
        served = data.get(f"test_{data.get('served_file')}", {})
        rows.append(
            {
                "variant": path.parent.name,
                "served_file": data.get("served_file"),
                "accuracy": served.get("accuracy"),
                "macro_f1": served.get("macro_f1"),
                "size_mb": data.get("sizes_mb", {}).get(data.get("served_file")),
                "latency_ms": data.get("latency_ms_per_3s_window_ort_cpu_2_threads", {}).get(data.get("served_file")),
                "train_command": data.get("train_command"),
                "export_command": data.get("export_command"),
            }
        )
    return rows
