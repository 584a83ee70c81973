"""The catalog loads and de-duplicates; the mood table covers every label the models emit and every mood word."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gateway.recommend.catalog import DEFAULT_CATALOG, REQUIRED_COLUMNS, CatalogError, load_catalog
from gateway.recommend.fusion import COMMON_EMOTIONS, TO_COMMON
from gateway.recommend.moods import FEATURES, MOOD_TABLE, UnknownEmotion, resolve_mood, target_path, valid_emotions

TEXT_LABELS = ["joy", "sadness", "anger", "fear", "surprise", "love"]
SPEECH_LABELS = ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"]
FACE_LABELS = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
WIDER_MOODS = [
    "excited",
    "bored",
    "tired",
    "relaxed",
    "stressed",
    "anxious",
    "depressed",
    "lonely",
    "energetic",
    "nostalgic",
    "confused",
    "frustrated",
    "hopeful",
    "proud",
    "guilty",
    "jealous",
    "ashamed",
    "disappointed",
    "content",
    "insecure",
    "embarrassed",
    "overwhelmed",
    "amused",
]


def test_default_catalog_is_shipped_and_clean(catalog):
    assert DEFAULT_CATALOG.exists()
    assert len(catalog) > 14_000
    assert len(set(catalog.ids)) == len(catalog)
    assert all(len(i) == 22 for i in catalog.ids[:100])
    assert (catalog.features[:, FEATURES.index("tempo")] > 0).all()  # the noise/sleep tracks are gone
    assert catalog.dropped["not_music"] == 69
    keys = {(a.casefold(), n.casefold()) for a, n in zip(catalog.artists, catalog.names)}
    assert len(keys) == len(catalog)


def _rows() -> pd.DataFrame:
    base = {"popularity": 60, "year": 2018, "valence": 0.5, "energy": 0.5, "danceability": 0.5, "tempo": 120.0, "acousticness": 0.2, "mode": 1}
    rows = [
        {"artist": "A", "track": "Song", "track_id": "spotify:track:" + "a" * 22, **base},
        {"artist": "A", "track": "Song", "track_id": "spotify:track:" + "a" * 22, **base, "popularity": 90},  # same id
        {"artist": "a ", "track": "SONG", "track_id": "spotify:track:" + "b" * 22, **base},  # same artist + title
        {"artist": "B", "track": "Other", "track_id": "c" * 22, **base},  # a bare id is fine too
        {"artist": "C", "track": "Rain", "track_id": "spotify:track:" + "d" * 22, **base, "tempo": 0.0},  # noise
    ]
    return pd.DataFrame(rows)


def test_user_catalog_csv_dedupes(tmp_path):
    path = tmp_path / "mine.csv"
    _rows().to_csv(path)
    catalog = load_catalog(path)
    assert sorted(catalog.ids) == ["a" * 22, "c" * 22]
    assert catalog.popularity[list(catalog.ids).index("a" * 22)] == 90  # the most popular copy survives
    assert catalog.dropped == {"unusable": 0, "not_music": 1, "duplicate_id": 1, "duplicate_title": 1}


def test_user_catalog_parquet(tmp_path):
    path = tmp_path / "mine.parquet"
    _rows().to_parquet(path)
    assert len(load_catalog(path)) == 2


def test_bad_catalogs_fail_at_load(tmp_path):
    path = tmp_path / "bad.csv"
    _rows().drop(columns=["valence"]).to_csv(path)
    with pytest.raises(CatalogError, match="valence"):
        load_catalog(path)
    with pytest.raises(CatalogError, match="csv or .parquet"):
        (tmp_path / "x.json").write_text("{}")
        load_catalog(tmp_path / "x.json")
    with pytest.raises(CatalogError, match="does not exist"):
        load_catalog(tmp_path / "missing.csv")
    assert "track_id" in REQUIRED_COLUMNS


@pytest.mark.parametrize("label", sorted({*TEXT_LABELS, *SPEECH_LABELS, *FACE_LABELS, *WIDER_MOODS}))
def test_every_label_and_mood_word_has_a_target(label):
    target = resolve_mood(label)
    assert 0 <= target.valence <= 1 and 0 <= target.energy <= 1 and 40 <= target.tempo <= 200
    assert label in valid_emotions()


def test_aliases_and_case():
    assert resolve_mood(" Happy ").mood == "joy"
    assert resolve_mood("sad").mood == "sadness"
    assert resolve_mood("FEARFUL").mood == "fear"
    with pytest.raises(UnknownEmotion):
        resolve_mood("hangry")


def test_table_is_consistent_with_the_circumplex():
    # Positive moods sit above negative ones on valence; high-arousal moods above low-arousal ones on energy/tempo.
    assert resolve_mood("joy").valence > resolve_mood("neutral").valence > resolve_mood("sadness").valence
    assert resolve_mood("anger").energy > resolve_mood("calm").energy
    assert resolve_mood("excited").tempo > resolve_mood("tired").tempo
    for mood in MOOD_TABLE.values():
        if mood.uplift_to:
            assert MOOD_TABLE[mood.uplift_to].valence > mood.valence
    for label in ("sadness", "anger", "fear"):
        assert MOOD_TABLE[label].uplift_to is not None


def test_uplift_path_starts_at_the_mood_and_ends_at_its_goal():
    sad = resolve_mood("sad")
    path = target_path(sad, "uplift", 5)
    assert np.allclose(path[0], sad.vector()) and np.allclose(path[-1], MOOD_TABLE["joy"].vector())
    assert (np.diff(path[:, FEATURES.index("valence")]) > 0).all()
    assert np.allclose(target_path(sad, "match", 5), sad.vector())
    assert np.allclose(target_path(resolve_mood("joy"), "uplift", 5), resolve_mood("joy").vector())


def test_fusion_vocabulary_covers_every_model_label():
    for label in {*TEXT_LABELS, *SPEECH_LABELS, *FACE_LABELS}:
        assert TO_COMMON[label] in COMMON_EMOTIONS
        assert resolve_mood(TO_COMMON[label])  # every fused emotion has music


def test_docs_table_matches_the_code():
    from gateway.recommend.moods import ALIASES
    from gateway.settings import PROJECT_ROOT

    doc = (PROJECT_ROOT / "docs" / "recommendation.md").read_text()
    for m in MOOD_TABLE.values():
        aliases = ", ".join(sorted(k for k, v in ALIASES.items() if v == m.mood))
        mode = {1.0: "major", 0.0: "minor", 0.5: "either"}[m.mode]
        row = (
            f"| {m.mood} | {m.valence:.2f} | {m.energy:.2f} | {m.danceability:.2f} | {m.tempo:.0f} | "
            f"{m.acousticness:.2f} | {mode} | {m.uplift_to or '—'} | {aliases} |"
        )
        assert row in doc, f"docs/recommendation.md is out of date for {m.mood}"
