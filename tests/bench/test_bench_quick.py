"""The benchmarks' quick mode end to end (so they cannot rot), and the config edits their variants make.

The quick run starts its own tritonserver, gateway and Flask baseline on free ports, measures a few seconds per
point and writes a full report into a temporary folder: the numbers are smoke, the plumbing is real.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from bench.common import REPOSITORY, TEXT_MODEL
from bench.triton_perf import Variant, build_repository, edit_config

SHIPPED = REPOSITORY / TEXT_MODEL / "config.pbtxt"
pytestmark = pytest.mark.skipif(not SHIPPED.exists(), reason=f"no {TEXT_MODEL} in {REPOSITORY}")


def _parse(text: str) -> model_config_pb2.ModelConfig:
    return text_format.Parse(text, model_config_pb2.ModelConfig())


def test_variant_configs_are_valid_and_change_one_thing():
    shipped = _parse(SHIPPED.read_text())
    off = _parse(edit_config(SHIPPED.read_text(), Variant("a", "", dynamic_batching=False)))
    assert off.name == "a" and not off.HasField("dynamic_batching") and off.max_batch_size == shipped.max_batch_size
    tuned = _parse(
        edit_config(SHIPPED.read_text(), Variant("b", "", queue_delay_us=500, preferred_batch_sizes=[], instances=2, intra_op_threads=1, ragged=True))
    )
    assert tuned.HasField("dynamic_batching") and tuned.dynamic_batching.max_queue_delay_microseconds == 500
    assert list(tuned.dynamic_batching.preferred_batch_size) == []
    assert tuned.instance_group[0].count == 2 and tuned.parameters["intra_op_threads"].string_value == "1"
    assert all(i.allow_ragged_batch for i in tuned.input)
    same = _parse(edit_config(SHIPPED.read_text(), Variant(TEXT_MODEL, "")))
    assert same == shipped


def test_variant_repository_links_the_model_and_sets_session_options_in_the_config(tmp_path: Path):
    repo = build_repository(tmp_path, [Variant("spin", "", parameters={"session.intra_op.allow_spinning": "1", "session.x": "y"})])
    assert (repo / "spin" / "1" / "model.onnx").resolve() == (REPOSITORY / TEXT_MODEL / "1" / "model.onnx").resolve()
    params = _parse((repo / "spin" / "config.pbtxt").read_text()).parameters
    assert params["session.intra_op.allow_spinning"].string_value == "1" and params["session.x"].string_value == "y"
    assert not (repo / "spin" / "1" / "model.py").exists()
    assert (repo / "spin" / "model.json").exists() and (repo / "spin" / "tokenizer.json").exists()


def test_quick_bench_writes_a_full_report(tmp_path: Path):
    perf_analyzer = Path(sys.executable).parent / "perf_analyzer"
    if not perf_analyzer.exists():
        pytest.skip("perf_analyzer (tritonclient[grpc,http]==2.51.0) is not installed")
    # As users run it, in its own process: the steps start servers and apps whose process-wide state (BLAS thread
    # limits, the garbage collector's frozen set) must not leak into the tests that run after this one.
    subprocess.run([sys.executable, "-m", "bench.run", "--quick", "--out", str(tmp_path)], check=True, timeout=1500, cwd=Path(__file__).parents[2])
    data = json.loads((tmp_path / "report.json").read_text())
    for name in ("report.json", "REPORT.md", "report.png", "triton.json", "gateway.json", "ceiling.json", "tuning.json", "face_detection.json"):
        assert (tmp_path / name).exists(), name

    triton = json.loads((tmp_path / "triton.json").read_text())
    assert {p["model"] for p in triton["points"]} == {TEXT_MODEL, f"{TEXT_MODEL}_nobatch"}
    assert all("error" not in p and p["throughput_infer_per_s"] > 0 for p in triton["points"]), triton["points"]
    nobatch = [p for p in triton["points"] if p["model"].endswith("_nobatch")]
    assert all(set(p["executed_batch_sizes"]) == {"1"} for p in nobatch)  # batching off: Triton ran every request alone

    gateway = json.loads((tmp_path / "gateway.json").read_text())
    text_points = [p for p in gateway["service"]["points"] if p["target"].endswith("/text_emotion")]
    assert text_points and all(p["errors"] == 0 and p["ok"] > 0 for p in text_points), text_points
    if not gateway["baseline"].get("skipped"):
        assert all(p["errors"] == 0 and p["ok"] > 0 for p in gateway["baseline"]["points"])
        assert gateway["summary"]["by_concurrency"]
    ceiling_ratio = gateway["summary"]["vs_model_ceiling"]  # the model's in-process rate, measured before and after the sweep
    assert ceiling_ratio["ceiling_sentences_per_s"] > 0 and set(ceiling_ratio["by_concurrency"]) == {str(p["concurrency"]) for p in text_points}
    profile = gateway["service"]["profile"]  # where each CPU ms goes (py-spy), or why it could not be sampled
    assert profile.get("skipped") or {r["process"] for r in profile["rows"]} >= {"gateway", "tritonserver", "python stubs", "load generator"}

    ceiling = json.loads((tmp_path / "ceiling.json").read_text())
    assert ceiling["matmul"]["fp32_gops"] > 0 and ceiling["model"]["int8 (served)"]["batch1"]["sentences_per_s"] > 0

    tuning = json.loads((tmp_path / "tuning.json").read_text())
    assert {r["level"] for r in tuning["rows"]} == {"triton", "gateway"}
    assert any(r["change"].startswith("text coalescing off") and r["throughput"] for r in tuning["rows"])

    face_detection = json.loads((tmp_path / "face_detection.json").read_text())
    if not face_detection.get("skipped"):
        rows = face_detection["rows"]
        assert {"haar (gateway before)", "blazeface face_pipeline (served)"} <= set(rows)
        assert all(0 <= r["recall"] <= 1 and r["cpu_ms_per_image"] > 0 and 0 <= r["tight_crops"]["share"] <= 1 for r in rows.values())
        assert all(set(r["recall_by_condition"]) >= {"occluded", "blurred", "face under 60 px"} for r in rows.values())
        assert face_detection["pipeline_accuracy_fer2013_val_dedup"]["images"] > 0 and face_detection["notes"]
        real = face_detection["real_photos"]
        assert real["photos"] > 0 and {"haar (gateway before)", "blazeface face_pipeline (served)"} <= set(real["rows"])
        assert all(0 <= r["recall"] <= 1 and 0 <= r["precision"] <= 1 for r in real["rows"].values() if "recall" in r)

    report = (tmp_path / "REPORT.md").read_text()
    assert "## Targets" in report and "## Triton" in report and "## Gateway" in report
    assert data["headline"]


def test_a_partial_run_keeps_the_notes_on_the_tables_it_leaves_alone(tmp_path):
    from bench.run import run_bench

    (tmp_path / "report.json").write_text(json.dumps({"notes": ["the triton tables come from the 03:41 run"]}))
    data = run_bench(argparse.Namespace(out=tmp_path, quick=True, only=["face_detection"]))
    assert data["steps"] == ["face_detection"] and data["command"].endswith("--only face_detection")
    assert data["notes"][0] == "the triton tables come from the 03:41 run"
    assert "re-run" in data["notes"][-1]
    face_detection = json.loads((tmp_path / "face_detection.json").read_text())
    if not face_detection.get("skipped"):
        assert "Real photos:" in (tmp_path / "REPORT.md").read_text()


def test_real_photos_are_small_licensed_and_labelled_inside_their_frames():
    from bench.face_detection import REAL_PHOTOS, real_photos

    labels = json.loads((REAL_PHOTOS / "labels.json").read_text())["photos"]
    assert len(labels) >= 20 and sum(len(p["faces"]) for p in labels) >= 60
    assert sum(f.stat().st_size for f in REAL_PHOTOS.iterdir()) <= 5 * 2**20
    assert {p["source"]["license"] for p in labels} <= {"MIT", "BSD-3-Clause", "Apache-2.0"}
    for photo in real_photos():
        height, width = photo["gray"].shape
        assert max(height, width) <= 1280 and len(photo["faces"]) <= 6
        for x0, y0, x1, y1 in photo["faces"]:
            assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height and y1 - y0 >= 40, photo["file"]


def test_real_photo_score_counts_hits_misses_ignored_and_false_boxes():
    import numpy as np

    from bench.face_detection import score_real

    gray = np.zeros((200, 300), np.uint8)
    face, small = np.array([10, 10, 110, 130], np.float32), np.array([200, 10, 230, 40], np.float32)
    photo = {"file": "x", "gray": gray, "rgb": gray, "faces": [face, np.array([150, 100, 250, 200], np.float32)], "ignore": [small]}

    class Boxes:
        def __init__(self, boxes):
            self.boxes = np.array(boxes, np.float32).reshape(-1, 4)

        def detect(self, image):
            return self.boxes

    row = score_real(Boxes([[0, 0, 100, 120], [201, 11, 231, 41], [5, 150, 60, 199]]), [photo])
    assert (row["found"], row["faces"], row["false_positives"]) == (1, 2, 1)  # the ignored face's box is neither
    assert row["recall"] == 0.5 and row["precision"] == 0.5
    assert score_real(Boxes([]), [photo])["recall"] == 0 and score_real(Boxes([]), [photo])["precision"] == 0


def test_accuracy_targets_cover_every_optimized_variant_each_model_serves():
    """Read from the committed exports' reports: each model's served variants against its FP32 graph."""
    from bench.report import ACCURACY_KEYS, accuracy, headline

    acc = accuracy()
    assert set(acc["models"]) == set(ACCURACY_KEYS)
    for model, (_, _, keys) in ACCURACY_KEYS.items():
        assert len(acc["models"][model]["rows"]) == 1 + len(keys), model
    targets = [r["target"] for r in headline(None, None, acc)]
    assert "face_emotion onnx_fp32, FP16-stored weights (served on CPU) accuracy within 0.5 points of fp32" in targets
    assert sum(t.startswith("speech_emotion ") for t in targets) == 2


def test_scene_score_counts_recall_by_condition():
    import numpy as np

    from bench.face_detection import Scene, score

    clean = {"source": "lfw", "face_px": 90, "blurred": False, "occluded": False, "cut_by_border": False}
    occluded = {**clean, "source": "fer2013", "face_px": 45, "occluded": True}
    squares = [np.array([0, 0, 100, 100], np.float32), np.array([150, 50, 250, 150], np.float32)]
    scene = Scene(np.zeros((200, 300), np.uint8), squares, [clean, occluded])

    class Boxes:
        margin = 0.0

        def detect(self, image):
            return np.array([[5, 5, 95, 95], [0, 150, 40, 199]], np.float32)

    row = score(Boxes(), [scene])
    assert (row["found"], row["faces"], row["false_positives_per_image"]) == (1, 2, 1)
    by = row["recall_by_condition"]
    assert by["occluded"] == {"faces": 1, "recall": 0.0} and by["not occluded"] == {"faces": 1, "recall": 1.0}
    assert by["face under 60 px"]["recall"] == 0.0 and by["LFW face"]["recall"] == 1.0 and by["cut by the border"] == {"faces": 0, "recall": None}


def test_face_pipeline_tuning_quick_writes_its_table(tmp_path: Path):
    from bench.common import SHARED_DATA
    from bench.face_pipeline_tuning import run

    if not any((SHARED_DATA / "fer2013" / "train").glob("*/*.jpg")) or not (REPOSITORY / "face_detection" / "1" / "model.onnx").exists():
        pytest.skip("no FER2013 train images, or face_detection not exported")
    data = run(True, tmp_path)
    assert data["faces"] > 0 and len(data["rows"]) == 2
    assert all(0 <= row["recall"] <= 1 and row["recall_by_condition"] for row in data["rows"].values())
    assert "| candidate |" in (tmp_path / "face_pipeline_tuning.md").read_text()
