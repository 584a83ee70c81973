"""Longer speech clips made of RAVDESS utterances, answered per window by the out-of-fold INT8 graphs, for calibration.

Almost every RAVDESS clip is one 3-s window (1,014 of 1,040), so the folds' own answers cannot say how calibrated the
mean of many windows is. Here ``m`` utterances of one actor and one emotion are joined end to end (pauses kept), and
the joined audio takes the gateway's path (trim, log-mel, normalize, 3-s windows every 1.5 s) into the INT8 graph of the
fold that held that actor out: every answer is out of fold, each file holds one emotion.

    python -m bench.speech_long_clips [--utterances 2 4] [--per-group 4] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from export.onnx import run, session
from gateway.preprocessing.audio import FeatureStats, SpeechFeatureConfig, extract_speech_features, read_audio, speech_windows, trim_silence
from training.ravdess import read_ravdess
from training.speech_whisper import window_lengths


def long_clips(run_dir: Path, data_dir: Path, utterances: list[int], per_group: int, threads: int, seed: int = 0) -> dict[str, np.ndarray]:
    meta = json.loads((run_dir / "train_config.json").read_text())
    config = SpeechFeatureConfig.from_dict(meta["features"])
    stats = FeatureStats.from_json(run_dir / "feature_stats.json")
    fold_of_actor = {a: k for k, actors in enumerate(meta["folds"]) for a in actors}
    clips = read_ravdess(data_dir, meta["labels"])
    actor_of = [int(c.path.stem.split("-")[-1]) for c in clips]
    rng = np.random.default_rng(seed)
    samples: dict[Path, np.ndarray] = {}
    made: dict[int, list[tuple[np.ndarray, np.ndarray, int, int, int]]] = {k: [] for k in range(len(meta["folds"]))}
    for m in utterances:
        for actor in sorted(fold_of_actor):
            for label in range(len(meta["labels"])):
                group = [c for c, a in zip(clips, actor_of) if a == actor and c.label == label]
                for _ in range(per_group):
                    picked = [group[i] for i in rng.choice(len(group), m, replace=False)]
                    for c in picked:
                        if c.path not in samples:
                            samples[c.path] = read_audio(c.path.read_bytes(), config, max_seconds=600)[0]
                    trimmed, _ = trim_silence(np.concatenate([samples[c.path] for c in picked]), config)
                    features = extract_speech_features(trimmed, config)
                    windows, _ = speech_windows(stats.normalize(features), config)
                    made[fold_of_actor[actor]].append((windows, window_lengths(features, len(windows), config), label, actor, m))
    probs, owner, labels, actors, count = [], [], [], [], []
    for k, items in made.items():
        sess = session(run_dir / "onnx" / "folds" / f"fold{k}_int8.onnx", threads)
        for windows, lengths, label, actor, m in items:
            probs.append(
                np.concatenate([run(sess, {"features": windows[i : i + 64], "lengths": lengths[i : i + 64]}) for i in range(0, len(windows), 64)])
            )
            owner += [len(labels)] * len(windows)
            labels.append(label)
            actors.append(actor)
            count.append(m)
    return {
        "window_probs": np.concatenate(probs),
        "owner": np.asarray(owner),
        "labels": np.asarray(labels),
        "actor": np.asarray(actors),
        "utterances": np.asarray(count),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run-dir", type=Path, default=Path("runs/speech_whisper"))
    p.add_argument("--data-dir", type=Path, default=Path("../shared/data/ravdess"))
    p.add_argument("--utterances", type=int, nargs="+", default=[2, 4])
    p.add_argument("--per-group", type=int, default=4, help="joined clips per actor, emotion and utterance count")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    started = time.perf_counter()
    found = long_clips(args.run_dir, args.data_dir, args.utterances, args.per_group, args.threads)
    path = args.run_dir / "long_clips_int8.npz"
    np.savez(path, **found)
    print(f"{len(found['window_probs'])} windows of {len(found['labels'])} joined clips → {path} ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
