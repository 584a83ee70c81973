"""Late fusion of the text, speech and face models' outputs into one emotion.

The three models speak different label sets, so each output is first mapped onto one common vocabulary (Ekman's
six basic emotions plus neutral); then the per-modality distributions are averaged with weights
``modality weight × the modality's own confidence`` (its top-class probability). A modality that is missing simply
takes no part. docs/recommendation.md has the mapping as a table.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

COMMON_EMOTIONS: tuple[str, ...] = ("joy", "sadness", "anger", "fear", "surprise", "disgust", "neutral")

# Every label any of the three models emits → the common vocabulary. The label sets do not clash, so one table
# serves all three: text (joy sadness anger fear surprise love), speech (neutral calm happy sad angry fearful
# disgust, plus RAVDESS's surprised), face (angry disgust fear happy sad surprise neutral).
TO_COMMON: dict[str, str] = {
    "joy": "joy",
    "happy": "joy",
    "love": "joy",
    "sadness": "sadness",
    "sad": "sadness",
    "anger": "anger",
    "angry": "anger",
    "fear": "fear",
    "fearful": "fear",
    "surprise": "surprise",
    "surprised": "surprise",
    "disgust": "disgust",
    "neutral": "neutral",
    "calm": "neutral",
}


class NothingToFuse(ValueError):
    """No modality produced a result."""


def to_common(scores: Mapping[str, float]) -> np.ndarray:
    """A model's per-label probabilities → a distribution over ``COMMON_EMOTIONS`` (labels it lacks get 0)."""
    vector = np.zeros(len(COMMON_EMOTIONS))
    for label, p in scores.items():
        common = TO_COMMON.get(label.lower())
        if common is not None:
            vector[COMMON_EMOTIONS.index(common)] += float(p)
    total = vector.sum()
    return vector / total if total > 0 else vector


def fuse(results: Mapping[str, dict | None], modality_weights: Mapping[str, float]) -> dict:
    """Fuse ``{"text": {"emotion", "confidence", "scores"}, "speech": None, ...}`` into one emotion.

    Returns the fused ``emotion`` and ``confidence``, the common-vocabulary ``scores``, each modality's share of
    the vote (``weights``), whether the present modalities agreed, and ``mood``: the word the music is chosen
    for. That is the most influential modality's own label when it maps to the fused emotion (so "love" and
    "calm" keep their own music), else the fused emotion.
    """
    present = {m: r for m, r in results.items() if r}
    if not present:
        raise NothingToFuse("no modality to fuse")
    fused = np.zeros(len(COMMON_EMOTIONS))
    shares: dict[str, float] = {}
    tops: dict[str, str] = {}
    for modality, result in present.items():
        distribution = to_common(result["scores"])
        weight = float(modality_weights.get(modality, 1.0)) * float(result["confidence"])
        fused += weight * distribution
        shares[modality] = weight
        tops[modality] = COMMON_EMOTIONS[int(np.argmax(distribution))]
    total = sum(shares.values())
    fused = fused / total if total > 0 else fused
    best = int(np.argmax(fused))
    emotion = COMMON_EMOTIONS[best]

    leader = max(shares, key=lambda m: (shares[m], m))
    leader_label = str(present[leader]["emotion"]).lower()
    mood = leader_label if TO_COMMON.get(leader_label) == emotion else emotion
    return {
        "emotion": emotion,
        "confidence": round(float(fused[best]), 4),
        "scores": {label: round(float(p), 4) for label, p in zip(COMMON_EMOTIONS, fused)},
        "weights": {m: round(w / total, 4) if total > 0 else 0.0 for m, w in shares.items()},
        "agreement": len(set(tops.values())) == 1,
        "mood": mood,
    }
