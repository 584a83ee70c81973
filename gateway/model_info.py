"""What the gateway knows about a served model, read from the ``model.json`` that the export writes beside it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # numpy dtype name: "int64", "float32"
    dims: list[int]  # without the batch axis; -1 = variable


@dataclass(frozen=True)
class ModelInfo:
    name: str
    labels: list[str]
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    max_batch_size: int
    directory: Path
    preprocessing: dict = field(default_factory=dict)
    temperature: float = 1.0  # fitted on validation data by the export (``calibration`` in model.json); 1 = as trained
    calibration_level: str = "window"  # speech: T on each window, or on the clip's mean (``postprocessing.clip_answer``)
    window_exponent: float = 0.0  # speech, level "clip": how fast the clip's temperature falls with its window count

    @classmethod
    def load(cls, directory: Path) -> ModelInfo:
        data = json.loads((directory / "model.json").read_text())
        return cls(
            name=data["name"],
            labels=data["labels"],
            inputs=[TensorSpec(**t) for t in data["inputs"]],
            outputs=[TensorSpec(**t) for t in data["outputs"]],
            max_batch_size=data["max_batch_size"],
            directory=directory,
            preprocessing=data.get("preprocessing", {}),
            temperature=float(data.get("calibration", {}).get("temperature", 1.0)),
            calibration_level=data.get("calibration", {}).get("level", "window"),
            window_exponent=float(data.get("calibration", {}).get("window_exponent", 0.0)),
        )

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]


def load_models(repository: Path, names: list[str]) -> dict[str, ModelInfo]:
    missing = [n for n in names if not (repository / n / "model.json").exists()]
    if missing:
        raise FileNotFoundError(f"model repository {repository} has no {', '.join(missing)} (run `emotune export ...`)")
    return {n: ModelInfo.load(repository / n) for n in names}
