"""Ranking properties over the shipped catalog: diversity, determinism, filters, uplift, and fit to the mood."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from gateway.errors import InvalidInput
from gateway.recommend.ranker import Filters
from gateway.recommend.service import Recommender


@pytest.fixture(scope="module")
def recommender(catalog):
    from gateway.settings import Settings

    settings = Settings(
        _env_file=None,
        SPOTIPY_CLIENT_ID=None,
        SPOTIPY_CLIENT_SECRET=None,
        spotify_api_prefix="http://127.0.0.1:9/v1/",
        spotify_token_url="http://127.0.0.1:9/api/token",
    )
    recommender = Recommender(settings, catalog=catalog)
    yield recommender
    recommender.spotify.close()


def artists(tracks):
    return Counter(t["artist"].casefold() for t in tracks)


@pytest.mark.parametrize("emotion", ["joy", "sad", "angry", "calm", "nostalgic"])
@pytest.mark.parametrize("strategy", ["match", "uplift"])
def test_diversity_cap_holds(recommender, emotion, strategy):
    _, tracks = recommender.tracks(emotion, limit=40, strategy=strategy)
    assert len(tracks) == 40
    assert max(artists(tracks).values()) <= recommender.settings.max_tracks_per_artist
    _, tracks = recommender.tracks(emotion, limit=25, strategy=strategy, max_per_artist=1)
    assert max(artists(tracks).values()) == 1
    assert len({t["id"] for t in tracks}) == len(tracks)


def test_same_request_same_answer(recommender, catalog):
    first = recommender.tracks("surprise", limit=15, strategy="uplift", filters=Filters(year_min=2018))
    again = recommender.tracks("surprise", limit=15, strategy="uplift", filters=Filters(year_min=2018))
    assert first == again
    fresh = Recommender(recommender.settings, catalog=catalog, spotify=recommender.spotify)
    assert fresh.tracks("surprise", limit=15, strategy="uplift", filters=Filters(year_min=2018)) == first


def test_filters_are_respected(recommender):
    _, tracks = recommender.tracks("joy", limit=30, filters=Filters(year_min=2018, year_max=2018, min_popularity=70))
    assert len(tracks) == 30
    assert all(t["year"] == 2018 and t["popularity"] >= 70 for t in tracks)
    _, none = recommender.tracks("joy", limit=10, filters=Filters(year_min=2030))
    assert none == []


def test_limit_and_bad_input(recommender):
    assert len(recommender.tracks("joy", limit=1)[1]) == 1
    assert len(recommender.tracks("joy")[1]) == recommender.settings.recommendation_limit
    for limit in (0, recommender.settings.max_recommendation_limit + 1):
        with pytest.raises(InvalidInput) as err:
            recommender.tracks("joy", limit=limit)
        assert err.value.status == 422 and err.value.code == "invalid_limit"
    with pytest.raises(InvalidInput) as err:
        recommender.tracks("joy", filters=Filters(year_min=2019, year_max=2017))
    assert err.value.code == "invalid_filters"
    with pytest.raises(InvalidInput) as err:
        recommender.tracks("hangry")
    assert err.value.status == 422 and "joy" in err.value.details[0]["valid_emotions"]


@pytest.mark.parametrize("emotion", ["sad", "angry", "fearful", "depressed", "anxious"])
def test_uplift_moves_valence_up_along_the_list(recommender, emotion):
    _, tracks = recommender.tracks(emotion, limit=12, strategy="uplift")
    valence = np.array([t["features"]["valence"] for t in tracks])
    third = len(valence) // 3
    assert valence[-third:].mean() > valence[:third].mean() + 0.2
    assert valence[-1] > valence[0]
    assert np.corrcoef(np.arange(len(valence)), valence)[0, 1] > 0.8
    assert all("toward" in t["reason"] for t in tracks)


def test_match_fits_the_mood(recommender):
    def mean(emotion, feature):
        return np.mean([t["features"][feature] for t in recommender.tracks(emotion, limit=20)[1]])

    assert mean("joy", "valence") > 0.7 > 0.3 > mean("sad", "valence")
    assert mean("angry", "energy") > 0.75 > 0.4 > mean("calm", "energy")
    assert mean("sad", "tempo") < mean("excited", "tempo")
    assert mean("calm", "acousticness") > mean("energetic", "acousticness")


def test_track_shape(recommender):
    track = recommender.tracks("love", limit=1)[1][0]
    assert {"name", "artist", "preview_url", "external_url", "image_url", "id", "uri", "features", "reason"} <= set(track)
    assert track["external_url"] == f"https://open.spotify.com/track/{track['id']}"
    assert track["uri"] == f"spotify:track:{track['id']}"
    assert track["image_url"] is None and track["reason"].startswith("fits love")
    assert set(track["features"]) == {"valence", "energy", "danceability", "tempo", "acousticness", "mode"}
