"""Same input, same answer: how far a text model's probabilities for one sentence move with what shares its batch.

A sentence scored alone (batch 1 at its own length, what the python backend runs for a lone request) is compared
with the same sentence inside random batches of 2–32 other sentences, grouped and cut the way
export/triton_backends/onnxruntime_cpu/model.py runs a dynamic batch: rows sorted by real length, groups whose
lengths differ by at most ``slack`` tokens, each padded to its longest row (``slack=None``: one group padded to
the batch's longest row).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Run = Callable[[dict[str, np.ndarray]], np.ndarray]


def pad(rows: list[list[int]], width: int) -> dict[str, np.ndarray]:
    ids = np.zeros((len(rows), width), dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, r in enumerate(rows):
        ids[i, : len(r)], mask[i, : len(r)] = r, 1
    return {"input_ids": ids, "attention_mask": mask}


def alone(run: Run, rows: list[list[int]], extra: int = 0, width: int | None = None) -> np.ndarray:
    """Each row on its own, at its length (+ ``extra`` padding tokens, or padded to ``width``)."""
    return np.concatenate([run(pad([r], width or len(r) + extra)) for r in rows])


def random_batches(n: int, rng: np.random.Generator, largest: int = 32) -> list[np.ndarray]:
    order, batches, start = rng.permutation(n), [], 0
    while start < n:
        size = int(rng.integers(2, largest + 1))
        batches.append(order[start : start + size])
        start += size
    return batches


def mixed(run: Run, rows: list[list[int]], batches: list[np.ndarray], slack: int | None) -> np.ndarray:
    """Every row's answer inside its batch, each batch run as the backend runs a dynamic batch."""
    probs = None
    for batch in batches:
        lengths = np.array([len(rows[i]) for i in batch])
        order = np.argsort(lengths, kind="stable")
        start = 0
        while start < len(order):
            stop = start + 1
            while stop < len(order) and (slack is None or lengths[order[stop]] <= lengths[order[start]] + slack):
                stop += 1
            group = batch[order[start:stop]]
            out = run(pad([rows[i] for i in group], int(lengths[order[start:stop]].max())))
            if probs is None:
                probs = np.zeros((len(rows), out.shape[1]), dtype=np.float32)
            probs[group] = out
            start = stop
    return probs


def shift(reference: np.ndarray, other: np.ndarray, labels: np.ndarray) -> dict:
    """How far ``other`` is from the alone answers: per sentence the largest class-probability change."""
    per_row = np.abs(other - reference).max(axis=1)
    return {
        "max_abs_diff": float(f"{per_row.max():.3g}"),
        "p99_abs_diff": float(f"{np.percentile(per_row, 99):.3g}"),
        "bitwise_identical_rows": round(float((per_row == 0).mean()), 4),
        "top1_flips": round(float((other.argmax(1) != reference.argmax(1)).mean()), 5),
        "accuracy": round(float((other.argmax(1) == labels).mean()), 4),
    }


def batch_shift(run: Run, rows: list[list[int]], labels: np.ndarray, slack: int, seed: int, padding: tuple[int, ...] = ()) -> dict:
    """Alone vs mixed batches (backend grouping) for every row; ``padding``: also alone padded to those widths."""
    reference = alone(run, rows)
    batched = mixed(run, rows, random_batches(len(rows), np.random.default_rng(seed)), slack)
    out = {
        "rows": len(rows),
        "accuracy_alone": round(float((reference.argmax(1) == labels).mean()), 4),
        f"mixed batches (groups within {slack} tokens)": shift(reference, batched, labels),
    }
    for width in padding:
        out[f"alone padded to {width}"] = shift(reference, alone(run, rows, width=width), labels)
    return out
