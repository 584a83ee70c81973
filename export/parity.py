"""ONNX vs PyTorch on real inputs: fails loudly past a tolerance."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch

from export.onnx import run, session


class ParityError(AssertionError):
    pass


def check_parity(
    module: torch.nn.Module,
    onnx_path: Path,
    batches: Iterable[dict[str, np.ndarray]],
    atol: float = 1e-4,
    to_output: Callable[[torch.Tensor], torch.Tensor] = lambda t: t,
) -> float:
    """Largest absolute difference between the module's and the ONNX graph's outputs; raises past ``atol``."""
    sess = session(onnx_path)
    module.eval()
    worst = 0.0
    with torch.inference_mode():
        for feeds in batches:
            expected = to_output(module(**{k: torch.from_numpy(v) for k, v in feeds.items()})).numpy()
            got = run(sess, feeds)
            worst = max(worst, float(np.abs(expected - got).max()))
    if worst > atol:
        raise ParityError(f"ONNX output differs from PyTorch by {worst:.2e} (tolerance {atol:.0e}) on {onnx_path.name}")
    return worst
