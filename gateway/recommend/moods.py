"""The mood table: every emotion word the service accepts → a target region in audio-feature space.

This is the one place where emotions meet music; docs/recommendation.md explains each column and the research
behind it. In short:

* Each mood is placed on Russell's valence–arousal circumplex (Russell 1980); the placements follow the quadrant
  and the ordering of affective norms such as Warriner et al. (2013) and the NRC VAD lexicon (Mohammad 2018).
  They are hand-set approximations, not copied values.
* Arousal drives ``energy`` (Spotify's perceptual intensity), ``tempo`` and, inversely, ``acousticness``;
  valence drives Spotify's ``valence`` and ``mode`` (major ↔ positive). Fast tempo and loud, dense sound carry
  activity/anger/joy, slow and soft carry sadness/tenderness/calm, major vs minor mode carries positive vs
  negative valence (Gabrielsson & Lindström 2010; Juslin & Laukka 2004). ``danceability`` rises with valence and
  moderate-to-high arousal.
* ``mode`` 0.5 means "either": both modes are equally far from it, so mode does not steer the ranking.
* ``uplift_to`` names the mood that the ``uplift`` strategy moves toward, one small step per position, starting
  at the listener's own mood: the iso principle of music therapy (Altshuler 1948; Heiderscheit & Madson 2015).
  Moods without it are already positive; for them ``uplift`` equals ``match``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

FEATURES: tuple[str, ...] = ("valence", "energy", "danceability", "tempo", "acousticness", "mode")
Strategy = Literal["match", "uplift"]
STRATEGIES: tuple[str, ...] = ("match", "uplift")


@dataclass(frozen=True)
class MoodTarget:
    """The centre of a mood's region in audio-feature space (same units as the catalog's columns)."""

    mood: str
    valence: float
    energy: float
    danceability: float
    tempo: float  # BPM
    acousticness: float
    mode: float  # 1 major, 0 minor, 0.5 either
    uplift_to: str | None = None

    def vector(self) -> np.ndarray:
        return np.array([getattr(self, f) for f in FEATURES], dtype=np.float64)


def _row(mood, valence, energy, danceability, tempo, acousticness, mode, uplift_to=None) -> MoodTarget:
    return MoodTarget(mood, valence, energy, danceability, tempo, acousticness, mode, uplift_to)


# mood            valence energy dance tempo acoustic mode  uplift toward
MOOD_TABLE: dict[str, MoodTarget] = {
    t.mood: t
    for t in (
        # Labels the three models emit (text: joy sadness anger fear surprise love; speech adds neutral calm disgust).
        _row("joy", 0.85, 0.75, 0.72, 124, 0.15, 1.0),
        _row("love", 0.72, 0.45, 0.58, 100, 0.45, 1.0),  # tenderness: slow-moderate, soft, major
        _row("surprise", 0.60, 0.80, 0.65, 128, 0.15, 0.5),  # high arousal, valence ambiguous
        _row("neutral", 0.50, 0.50, 0.60, 115, 0.30, 0.5),
        _row("calm", 0.60, 0.25, 0.45, 90, 0.70, 1.0),
        _row("sadness", 0.15, 0.25, 0.40, 85, 0.65, 0.0, "joy"),
        _row("anger", 0.20, 0.90, 0.50, 135, 0.05, 0.0, "calm"),
        _row("fear", 0.20, 0.65, 0.40, 110, 0.30, 0.0, "calm"),
        _row("disgust", 0.15, 0.60, 0.45, 110, 0.20, 0.0, "content"),
        # The original design's wider mood words.
        _row("excited", 0.80, 0.90, 0.72, 128, 0.08, 1.0),
        _row("energetic", 0.70, 0.92, 0.75, 128, 0.05, 0.5),
        _row("amused", 0.80, 0.65, 0.72, 118, 0.20, 1.0),
        _row("proud", 0.78, 0.72, 0.62, 118, 0.15, 1.0),
        _row("hopeful", 0.72, 0.55, 0.58, 110, 0.35, 1.0),
        _row("content", 0.72, 0.38, 0.55, 100, 0.50, 1.0),
        _row("relaxed", 0.68, 0.25, 0.50, 92, 0.70, 1.0),
        _row("nostalgic", 0.45, 0.38, 0.48, 96, 0.60, 0.5),  # bittersweet: mixed valence
        _row("bored", 0.35, 0.25, 0.50, 100, 0.45, 0.5, "amused"),
        _row("tired", 0.40, 0.15, 0.40, 85, 0.75, 0.5, "content"),
        _row("confused", 0.35, 0.50, 0.50, 110, 0.35, 0.5, "calm"),
        _row("depressed", 0.08, 0.18, 0.35, 80, 0.70, 0.0, "hopeful"),
        _row("lonely", 0.15, 0.25, 0.40, 85, 0.65, 0.0, "love"),
        _row("disappointed", 0.22, 0.35, 0.45, 95, 0.55, 0.0, "hopeful"),
        _row("guilty", 0.20, 0.40, 0.40, 95, 0.55, 0.0, "calm"),
        _row("ashamed", 0.18, 0.35, 0.40, 92, 0.55, 0.0, "content"),
        _row("embarrassed", 0.28, 0.55, 0.50, 105, 0.40, 0.5, "amused"),
        _row("insecure", 0.25, 0.45, 0.45, 100, 0.45, 0.0, "proud"),
        _row("anxious", 0.22, 0.72, 0.45, 115, 0.30, 0.0, "calm"),
        _row("stressed", 0.22, 0.75, 0.48, 118, 0.25, 0.0, "relaxed"),
        _row("overwhelmed", 0.22, 0.80, 0.45, 120, 0.25, 0.0, "calm"),
        _row("frustrated", 0.22, 0.78, 0.50, 125, 0.15, 0.0, "content"),
        _row("jealous", 0.20, 0.70, 0.50, 118, 0.20, 0.0, "content"),
    )
}

# Other spellings of the same mood: the models' own labels (speech/face say happy, sad, angry, fearful...) and
# common everyday words.
ALIASES: dict[str, str] = {
    "happy": "joy",
    "happiness": "joy",
    "joyful": "joy",
    "glad": "joy",
    "cheerful": "joy",
    "sad": "sadness",
    "unhappy": "sadness",
    "down": "sadness",
    "angry": "anger",
    "mad": "anger",
    "furious": "anger",
    "annoyed": "frustrated",
    "fearful": "fear",
    "afraid": "fear",
    "scared": "fear",
    "surprised": "surprise",
    "disgusted": "disgust",
    "loving": "love",
    "romantic": "love",
    "peaceful": "calm",
    "chill": "relaxed",
    "excitement": "excited",
    "nervous": "anxious",
    "worried": "anxious",
    "sleepy": "tired",
    "exhausted": "tired",
    "boredom": "bored",
    "loneliness": "lonely",
    "hope": "hopeful",
}


class UnknownEmotion(ValueError):
    """An emotion word that is neither in the mood table nor an alias."""

    def __init__(self, emotion: str):
        super().__init__(f"unknown emotion {emotion!r}")
        self.emotion = emotion


def valid_emotions() -> list[str]:
    """Every accepted word, sorted: what a 422 lists."""
    return sorted({*MOOD_TABLE, *ALIASES})


def resolve_mood(emotion: str) -> MoodTarget:
    """Case- and space-insensitive lookup through the aliases."""
    key = emotion.strip().lower()
    key = ALIASES.get(key, key)
    try:
        return MOOD_TABLE[key]
    except KeyError:
        raise UnknownEmotion(emotion) from None


def target_path(mood: MoodTarget, strategy: Strategy, length: int) -> np.ndarray:
    """One target vector per list position, shape ``(length, len(FEATURES))``.

    ``match`` repeats the mood's centre; ``uplift`` moves linearly from it to the ``uplift_to`` mood's centre, so the
    first track meets the listener where they are and the last one is where the list is taking them.
    """
    start = mood.vector()
    if strategy == "match" or mood.uplift_to is None or length < 2:
        return np.tile(start, (length, 1))
    end = MOOD_TABLE[mood.uplift_to].vector()
    steps = np.linspace(0.0, 1.0, length)[:, None]
    return start + steps * (end - start)
