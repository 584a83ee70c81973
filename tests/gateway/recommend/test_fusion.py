"""Late fusion: agreeing, disagreeing and missing modalities."""

from __future__ import annotations

import pytest

from gateway.recommend.fusion import NothingToFuse, fuse, to_common

WEIGHTS = {"text": 1.0, "speech": 1.0, "face": 1.0}


def result(scores: dict[str, float]) -> dict:
    best = max(scores, key=scores.get)
    return {"emotion": best, "confidence": scores[best], "scores": scores}


TEXT_JOY = result({"joy": 0.85, "sadness": 0.05, "anger": 0.04, "fear": 0.03, "surprise": 0.02, "love": 0.01})
SPEECH_HAPPY = result({"neutral": 0.05, "calm": 0.05, "happy": 0.7, "sad": 0.05, "angry": 0.05, "fearful": 0.05, "disgust": 0.05})
FACE_HAPPY = result({"angry": 0.02, "disgust": 0.01, "fear": 0.02, "happy": 0.9, "sad": 0.02, "surprise": 0.02, "neutral": 0.01})
FACE_SAD_SURE = result({"angry": 0.01, "disgust": 0.01, "fear": 0.01, "happy": 0.01, "sad": 0.94, "surprise": 0.01, "neutral": 0.01})
TEXT_JOY_UNSURE = result({"joy": 0.4, "sadness": 0.3, "anger": 0.1, "fear": 0.1, "surprise": 0.05, "love": 0.05})


def test_agreeing_modalities_reinforce():
    fused = fuse({"text": TEXT_JOY, "speech": SPEECH_HAPPY, "face": FACE_HAPPY}, WEIGHTS)
    assert fused["emotion"] == "joy" and fused["agreement"] is True
    assert fused["confidence"] > 0.75
    assert sum(fused["weights"].values()) == pytest.approx(1.0, abs=1e-3)
    assert sum(fused["scores"].values()) == pytest.approx(1.0, abs=1e-3)


def test_disagreement_goes_to_the_more_confident_modality():
    fused = fuse({"text": TEXT_JOY_UNSURE, "face": FACE_SAD_SURE}, WEIGHTS)
    assert fused["emotion"] == "sadness" and fused["agreement"] is False
    assert fused["weights"]["face"] > fused["weights"]["text"]
    assert fused["mood"] == "sad"  # the leading modality's own label, which the mood table knows
    # A prior weight can overrule confidence.
    assert fuse({"text": TEXT_JOY_UNSURE, "face": FACE_SAD_SURE}, {"text": 20.0, "face": 1.0})["emotion"] == "joy"


def test_missing_modalities_take_no_part():
    alone = fuse({"text": TEXT_JOY, "speech": None, "face": None}, WEIGHTS)
    assert alone["emotion"] == "joy" and alone["weights"] == {"text": 1.0}
    assert fuse({"face": FACE_SAD_SURE}, WEIGHTS)["emotion"] == "sadness"
    with pytest.raises(NothingToFuse):
        fuse({"text": None, "speech": None}, WEIGHTS)


def test_specific_labels_keep_their_music():
    calm = result({"neutral": 0.1, "calm": 0.8, "happy": 0.02, "sad": 0.02, "angry": 0.02, "fearful": 0.02, "disgust": 0.02})
    fused = fuse({"speech": calm}, WEIGHTS)
    assert fused["emotion"] == "neutral" and fused["mood"] == "calm"
    love = result({"joy": 0.2, "sadness": 0.02, "anger": 0.02, "fear": 0.02, "surprise": 0.02, "love": 0.72})
    fused = fuse({"text": love, "face": FACE_HAPPY}, WEIGHTS)
    assert fused["emotion"] == "joy" and fused["mood"] == "happy"  # face leads (0.9 > 0.72)
    assert fuse({"text": love}, WEIGHTS)["mood"] == "love"


def test_to_common_maps_and_normalises():
    vector = to_common({"calm": 0.3, "neutral": 0.3, "happy": 0.2, "unknown-label": 0.2})
    assert vector.sum() == pytest.approx(1.0)
    assert vector.max() == pytest.approx(0.75)  # neutral = calm + neutral, renormalised over known labels
