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
