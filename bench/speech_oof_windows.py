"""The speech folds' out-of-fold INT8 answers per 3-s window, saved once for calibration studies.

``runs/speech_whisper/oof_probabilities.npy`` holds only the PyTorch heads' clip answers; calibration must be fitted on
what is served (each fold's INT8 graph, per window), so this runs ``runs/speech_whisper/onnx/folds/fold{k}_int8.onnx``
(written by ``emotune export speech``) on its own actors' windows, exactly as ``export.speech._out_of_fold`` does.

    python -m bench.speech_oof_windows [--run-dir runs/speech_whisper] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from export.onnx import run, session
from export.speech import SERVED_INT8, Windows
from gateway.preprocessing.audio import FeatureStats, SpeechFeatureConfig
from training.ravdess import read_ravdess


def out_of_fold_windows(run_dir: Path, data_dir: Path, threads: int) -> dict[str, np.ndarray]:
    meta = json.loads((run_dir / "train_config.json").read_text())
    config = SpeechFeatureConfig.from_dict(meta["features"])
    stats = FeatureStats.from_json(run_dir / "feature_stats.json")
    by_name = {c.path.name: c for c in read_ravdess(data_dir, meta["labels"])}
    folds = [[by_name[n] for n in files] for files in meta["fold_files"]]
    clips = [c for fold in folds for c in fold]
    fold_of = np.concatenate([np.full(len(f), k) for k, f in enumerate(folds)])
    data = Windows(clips, config, stats, Path(meta.get("cache_dir") or run_dir / "cache"), int(meta["seed"]))
    probs, owners = [], []
    for k in range(len(folds)):
        rows = np.flatnonzero(fold_of == k)
        windows, lengths, owner = data.of(rows)
        sess = session(run_dir / "onnx" / "folds" / f"fold{k}_int8.onnx", threads)
        probs.append(
            np.concatenate([run(sess, {"features": windows[i : i + 64], "lengths": lengths[i : i + 64]}) for i in range(0, len(windows), 64)])
        )
        owners.append(rows[owner])
    return {
        "window_probs": np.concatenate(probs),
        "owner": np.concatenate(owners),
        "labels": data.labels,
        "fold": fold_of,
        "actor": np.asarray([int(c.path.stem.split("-")[-1]) for c in clips]),
        "files": np.asarray([c.path.name for c in clips]),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run-dir", type=Path, default=Path("runs/speech_whisper"))
    p.add_argument("--data-dir", type=Path, default=Path("../shared/data/ravdess"))
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    started = time.perf_counter()
    found = out_of_fold_windows(args.run_dir, args.data_dir, args.threads)
    path = args.run_dir / "oof_windows_int8.npz"
    np.savez(path, **found)
    print(f"{SERVED_INT8}: {len(found['window_probs'])} windows of {len(found['labels'])} clips → {path} ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
