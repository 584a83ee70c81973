"""Spotify enrichment and playlists through spotipy, against a local fake Spotify over real HTTP."""

from __future__ import annotations

import time

import pytest

from gateway.recommend.service import Recommender
from gateway.recommend.spotify import SpotifyEnricher

IDS = [f"{c}" * 22 for c in "ABCDEFGHIJ"]


def tracks(ids=IDS) -> list[dict]:
    return [{"id": i, "image_url": None, "preview_url": None} for i in ids]


@pytest.fixture
def enricher_for(make_settings):
    made = []

    def build(fake, **overrides) -> SpotifyEnricher:
        enricher = SpotifyEnricher(make_settings(fake, **overrides))
        made.append(enricher)
        return enricher

    yield build
    for enricher in made:
        enricher.close()


async def test_success_enriches_with_bounded_concurrency_and_caches(fake_spotify, enricher_for):
    fake_spotify.latency_s = 0.05
    enricher = enricher_for(fake_spotify, spotify_concurrency=3)
    items = tracks()
    assert await enricher.enrich(items) == {"status": "ok"}
    assert items[0]["image_url"] == f"https://i.scdn.co/image/{IDS[0]}-640"  # the largest image
    assert items[0]["duration_ms"] == 200_000 and items[0]["album"] == f"Album of {IDS[0]}"
    assert items[0]["preview_url"].endswith(IDS[0])
    gets = fake_spotify.api_calls("GET")
    assert sorted(r["path"] for r in gets) == sorted(f"/v1/tracks/{i}" for i in IDS)  # one GET /tracks/{id} each
    assert all(r["auth"] == "Bearer app-token" for r in gets)
    assert len(fake_spotify.api_calls("POST", "/api/token")) == 1  # one token for all threads
    assert 1 < fake_spotify.max_in_flight <= 3

    again = tracks()
    assert await enricher.enrich(again) == {"status": "ok"}
    assert again[3]["image_url"] and len(fake_spotify.api_calls("GET")) == len(IDS)  # served from the cache


async def test_unknown_track_is_partial(fake_spotify, enricher_for):
    fake_spotify.unknown_ids.add(IDS[1])
    items = tracks(IDS[:3])
    enricher = enricher_for(fake_spotify)
    outcome = await enricher.enrich(items)
    assert outcome["status"] == "partial" and outcome["reason"] == "not_found"
    assert items[0]["image_url"] and items[1]["image_url"] is None
    calls = len(fake_spotify.api_calls("GET"))
    assert (await enricher.enrich(tracks(IDS[:3])))["reason"] == "not_found"
    assert len(fake_spotify.api_calls("GET")) == calls  # the miss is remembered too


async def test_no_credentials_means_catalog_only(enricher_for, fake_spotify):
    enricher = enricher_for(fake_spotify, credentials=False)
    items = tracks()
    outcome = await enricher.enrich(items)
    assert outcome["status"] == "skipped" and outcome["reason"] == "no_credentials"
    assert fake_spotify.requests == [] and items[0]["image_url"] is None


@pytest.mark.parametrize(
    ("behaviour", "reason"), [("401", "unauthorized"), ("403", "forbidden"), ("500", "spotify_unavailable"), ("503", "spotify_unavailable")]
)
async def test_api_errors_skip_enrichment_and_pause(fake_spotify, enricher_for, behaviour, reason):
    fake_spotify.behaviour = behaviour
    enricher = enricher_for(fake_spotify)
    items = tracks()
    outcome = await enricher.enrich(items)
    assert outcome["status"] == "skipped" and outcome["reason"] == reason and behaviour in outcome["message"]
    assert all(t["image_url"] is None for t in items)
    calls = len(fake_spotify.api_calls())
    fake_spotify.behaviour = "ok"
    paused = await enricher.enrich(tracks())  # within the cooldown Spotify is left alone
    assert paused["status"] == "skipped" and paused["reason"] == reason and "paused" in paused["message"]
    assert len(fake_spotify.api_calls()) == calls


async def test_429_honours_retry_after(fake_spotify, enricher_for):
    fake_spotify.behaviour, fake_spotify.retry_after = "429", 1
    enricher = enricher_for(fake_spotify, spotify_cooldown_s=60)
    outcome = await enricher.enrich(tracks())
    assert outcome == {"status": "skipped", "reason": "rate_limited", "message": "Spotify rate limit (429): retry after 1 s"}
    assert len(fake_spotify.api_calls("GET")) <= enricher.settings.spotify_concurrency  # no retries; queued calls stop
    fake_spotify.behaviour = "ok"
    calls = len(fake_spotify.api_calls("GET"))
    assert (await enricher.enrich(tracks()))["reason"] == "rate_limited"  # still inside Retry-After
    assert len(fake_spotify.api_calls("GET")) == calls
    time.sleep(1.1)  # Retry-After (1 s) has passed, not the 60 s cooldown
    assert (await enricher.enrich(tracks()))["status"] == "ok"


async def test_token_endpoint_refusal(fake_spotify, enricher_for):
    fake_spotify.token_behaviour = "401"
    outcome = await enricher_for(fake_spotify).enrich(tracks())
    assert outcome["status"] == "skipped" and outcome["reason"] == "auth_failed" and "invalid_client" in outcome["message"]
    assert fake_spotify.api_calls() == []


async def test_slow_spotify_answers_within_the_deadline(fake_spotify, enricher_for):
    fake_spotify.behaviour, fake_spotify.delay_s = "slow", 5.0
    enricher = enricher_for(fake_spotify, spotify_timeout_s=0.4)
    items = tracks()
    started = time.monotonic()
    outcome = await enricher.enrich(items)
    assert time.monotonic() - started < 1.0
    assert outcome["status"] == "skipped" and outcome["reason"] == "timeout"
    assert all(t["image_url"] is None for t in items)


async def test_unreachable_spotify(enricher_for, make_settings):
    enricher = SpotifyEnricher(make_settings(None, SPOTIPY_CLIENT_ID="id", SPOTIPY_CLIENT_SECRET="secret"))
    try:
        outcome = await enricher.enrich(tracks())
    finally:
        enricher.close()
    assert outcome["status"] == "skipped" and outcome["reason"] in ("unreachable", "timeout")


async def test_recommendation_reports_enrichment(fake_spotify, make_settings, catalog):
    recommender = Recommender(make_settings(fake_spotify), catalog=catalog)
    try:
        body = await recommender.recommend("joy", limit=5)
        assert body["enrichment"] == {"status": "ok"}
        assert all(t["image_url"] and t["duration_ms"] for t in body["recommendations"])
        fake_spotify.behaviour = "429"
        recommender.spotify._cache.clear()
        body = await recommender.recommend("sad", limit=5)
        assert body["enrichment"]["reason"] == "rate_limited" and len(body["recommendations"]) == 5
    finally:
        await recommender.close()


async def test_playlist_with_user_oauth(fake_spotify, enricher_for):
    enricher = enricher_for(fake_spotify, SPOTIPY_REDIRECT_URI="http://127.0.0.1:8888/callback", spotify_refresh_token="refresh-me")
    uris = [f"spotify:track:{i}" for i in IDS[:4]]
    outcome = await enricher.create_playlist("emotune: joy", uris, "music for joy")
    assert outcome["status"] == "created" and outcome["tracks"] == 4
    playlist = fake_spotify.playlists[outcome["id"]]
    assert playlist["items"] == uris and playlist["public"] is False
    posts = fake_spotify.api_calls("POST")
    assert [p["path"] for p in posts] == ["/v1/me/playlists", f"/v1/playlists/{outcome['id']}/items"]
    assert all(p["auth"] == "Bearer user-token" for p in posts)  # the refreshed user token, not the app's


async def test_playlist_needs_user_oauth_and_survives_failures(fake_spotify, enricher_for):
    outcome = await enricher_for(fake_spotify).create_playlist("x", ["spotify:track:" + IDS[0]])
    assert outcome["status"] == "skipped" and outcome["reason"] == "user_auth_not_configured"
    fake_spotify.behaviour = "403"
    enricher = enricher_for(fake_spotify, SPOTIPY_REDIRECT_URI="http://127.0.0.1:8888/callback", spotify_refresh_token="r")
    outcome = await enricher.create_playlist("x", ["spotify:track:" + IDS[0]])
    assert outcome["status"] == "skipped" and outcome["reason"] == "forbidden"
