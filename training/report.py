"""A model's report: accuracy, macro-F1, per-class F1, confusion matrix PNG, as JSON and Markdown."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score


def record_command() -> str:
    """The command that is running, as a reader would retype it: ``emotune …`` or ``python -m <module> …``."""
    if Path(sys.argv[0]).name == "emotune":
        return shlex.join(["emotune", *sys.argv[1:]])
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and spec.name:
        return shlex.join(["python", "-m", spec.name.removesuffix(".__main__"), *sys.argv[1:]])
    return shlex.join(["python", *sys.argv])


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, labels: list[str]) -> dict:
    per_class = f1_score(y_true, y_pred, labels=range(len(labels)), average=None, zero_division=0)
    return {
        "n": int(len(y_true)),
        "accuracy": round(float(accuracy_score(y_true, y_pred)), 4),
        "macro_f1": round(float(f1_score(y_true, y_pred, average="macro")), 4),
        "per_class_f1": {name: round(float(v), 4) for name, v in zip(labels, per_class, strict=True)},
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=range(len(labels))).tolist(),
    }


def plot_confusion_matrix(matrix: list[list[int]], labels: list[str], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = np.asarray(matrix)
    norm = m / np.maximum(m.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.1 * len(labels) + 2, 1.0 * len(labels) + 1.5))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, str(m[i, j]), ha="center", va="center", color="white" if norm[i, j] > 0.5 else "black", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(out_dir: Path, title: str, report: dict, labels: list[str], matrix_key: str) -> None:
    """Write ``report.json``, ``REPORT.md`` and ``confusion_matrix.png`` (from ``report[matrix_key]``)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    plot_confusion_matrix(report[matrix_key]["confusion_matrix"], labels, title, out_dir / "confusion_matrix.png")
    lines = [f"# {title}", ""]
    for key, value in report.items():
        if isinstance(value, dict) and "accuracy" in value and "n" in value:
            lines += [
                f"## {key}",
                "",
                f"- rows: {value['n']}",
                f"- accuracy: **{value['accuracy']:.4f}**",
                f"- macro-F1: **{value['macro_f1']:.4f}**",
                "",
                "| class | F1 |",
                "|---|---|",
            ]
            lines += [f"| {k} | {v:.4f} |" for k, v in value["per_class_f1"].items()]
            lines.append("")
        elif isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            lines += [f"## {key}", ""] + [f"- {v}" for v in value] + [""]
        elif isinstance(value, (list, dict)):
            lines += [f"## {key}", "", "```json", json.dumps(value, indent=2, ensure_ascii=False), "```", ""]
        else:
            lines += [f"- **{key}**: {value}"]
    lines += ["", f"![confusion matrix]({'confusion_matrix.png'})", ""]
    (out_dir / "REPORT.md").write_text("\n".join(lines))
