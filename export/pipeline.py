"""The one export pipeline: load → ONNX → parity → variants (INT8 / FP16) → calibration → repository → report.

Each model's module (``export.text``, ``export.speech``, ``export.face``) loads its run and fills a ``ModelExport``
description; ``run_export`` does the rest in the same order for every model.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from export.onnx import export_onnx
from export.parity import check_parity
from export.repository import ModelSpec, write_model
from training.report import record_command, write_report


@dataclass(frozen=True)
class ExportOptions:
    """What ``emotune export <model>`` is told; read once from the command line."""

    run_dir: Path
    repository: Path = Path("model_repository")
    data_dir: Path | None = None  # default: the model's folder under ../shared/data
    test_limit: int | None = None  # evaluate on a subset (smoke runs)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ExportOptions:
        return cls(run_dir=args.run_dir or Path(f"runs/{args.model}"), repository=args.repository, data_dir=args.data_dir, test_limit=args.test_limit)

    def data(self, default: str) -> Path:
        return self.data_dir or Path("../shared/data") / default


@dataclass
class ModelExport:
    """What differs between models. ``variants(fp32, work)`` → every file by name (``onnx_fp32`` included);
    ``flavours`` maps each repository flavour to one of those names; ``evaluate(name, file)`` scores a file;
    ``calibrate(file)`` fits the served file's temperature on held-out data (``training.calibration.calibration_summary``)."""

    spec: ModelSpec
    served: torch.nn.Module
    example: dict[str, torch.Tensor]
    dynamic_axes: dict[str, dict[int, str]]
    parity_batches: list[dict[str, np.ndarray]]
    variants: Callable[[Path, Path], dict[str, Path]]
    flavours: dict[str, str]
    evaluate: Callable[[str, Path], dict | None]
    calibrate: Callable[[Path], dict] | None = None
    join: Callable[[Path, Path], Path] | None = None  # (file, destination) → the served file: speech joins its log-mel front end
    files: dict[str, Path] = field(default_factory=dict)
    parity_atol: float = 1e-4


@dataclass
class Exported:
    files: dict[str, Path]
    parity: float
    metrics: dict[str, dict]
    calibration: dict | None
    command: str

    def report(self) -> dict:
        """The fields every model's report carries."""
        return {
            "export_command": self.command,
            "parity_max_abs_diff_fp32": float(f"{self.parity:.3g}"),
            "sizes_mb": {name: round(path.stat().st_size / 2**20, 2) for name, path in self.files.items()},
            **({"calibration": self.calibration} if self.calibration else {}),
        }


def run_export(description: ModelExport, options: ExportOptions) -> Exported:
    work = options.run_dir / "onnx"
    outputs = [t.name for t in description.spec.outputs]
    fp32 = export_onnx(description.served, description.example, outputs, description.dynamic_axes, work / "model_fp32.onnx")
    parity = check_parity(description.served, fp32, description.parity_batches, atol=description.parity_atol)
    files = description.variants(fp32, work)
    metrics = {name: m for name, path in files.items() if (m := description.evaluate(name, path)) is not None}
    calibration, spec = None, description.spec
    if description.calibrate is not None:
        calibration = description.calibrate(files[description.flavours["python"]])
        spec = replace(spec, calibration={k: calibration[k] for k in ("temperature", "level", "window_exponent") if k in calibration})
    served = {flavour: files[name] for flavour, name in description.flavours.items()}
    if description.join is not None:
        served = {flavour: description.join(path, work / f"served_{flavour}.onnx") for flavour, path in served.items()}
    write_model(options.repository, spec, served, files=description.files)
    return Exported(files, parity, metrics, calibration, record_command())


def write_model_report(repository: Path, name: str, title: str, report: dict, labels: list[str], matrix_key: str) -> Path:
    """``reports/<model>/``: report.json, REPORT.md, the confusion matrix (and the reliability diagram the calibration drew)."""
    out = repository / "reports" / name
    write_report(out, title, report, labels, matrix_key)
    if (out / "reliability.png").exists():
        with open(out / "REPORT.md", "a") as f:
            f.write("![reliability diagram, before and after the temperature](reliability.png)\n")
    return out
