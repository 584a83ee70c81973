"""Shared fixtures: the shipped catalog (loaded once), settings that can never reach the real Spotify, a fake Spotify."""

from __future__ import annotations

import pytest

from gateway.recommend.catalog import load_catalog
from gateway.settings import Settings
from tests.fakes.spotify_server import FakeSpotify

# A closed loopback port: anything that slips past the fakes fails fast instead of calling Spotify.
NOWHERE = "http://127.0.0.1:9"


def _make_settings(fake: FakeSpotify | None = None, *, credentials: bool = True, **overrides) -> Settings:
    """Settings pointed at ``fake`` (or at nowhere); never read from the environment's Spotify credentials."""
    values = {
        "SPOTIPY_CLIENT_ID": "test-client" if credentials and fake else None,
        "SPOTIPY_CLIENT_SECRET": "test-secret" if credentials and fake else None,
        "SPOTIPY_REDIRECT_URI": None,
        "spotify_refresh_token": None,
        "spotify_api_prefix": fake.api_prefix if fake else f"{NOWHERE}/v1/",
        "spotify_token_url": fake.token_url if fake else f"{NOWHERE}/api/token",
        "spotify_timeout_s": 1.0,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


@pytest.fixture
def make_settings():
    """``make_settings(fake=None, credentials=True, **overrides)`` → Settings."""
    return _make_settings


@pytest.fixture(scope="session")
def catalog():
    return load_catalog()


@pytest.fixture
def fake_spotify():
    with FakeSpotify() as fake:
        yield fake
