"""Spotify through spotipy: album art, duration and preview URL for catalog tracks, and playlists for a user.

Spotify is an extra, never a dependency of an answer. Without credentials nothing is called. When Spotify is
slow, down, rate-limiting (429) or refusing (401/403), the catalog's answer goes out within
``settings.spotify_timeout_s`` and says why it was not enriched; after such a failure Spotify is left alone for
the Retry-After time (429) or ``settings.spotify_cooldown_s`` (anything else), so later requests stay fast.

Built for the Web API as it is for development-mode apps since February 2026: one ``GET /tracks/{id}`` per track
(the multi-id endpoint is gone) with at most ``settings.spotify_concurrency`` in flight, and playlists through
``POST /me/playlists`` + ``POST /playlists/{id}/items``. ``settings.spotify_api_prefix`` and
``settings.spotify_token_url`` redirect spotipy, which is how the tests point it at a local fake server.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor

import requests
import spotipy
from spotipy.cache_handler import MemoryCacheHandler
from spotipy.exceptions import SpotifyException, SpotifyOauthError
from spotipy.oauth2 import SpotifyClientCredentials, SpotifyOAuth

from gateway.settings import Settings

log = logging.getLogger(__name__)

PLAYLIST_SCOPE = "playlist-modify-private playlist-modify-public"


class _Cancelled(Exception):
    """A queued call that did not go out because Spotify was paused meanwhile."""


class _Skip(Exception):
    """Why Spotify was not (fully) used for this request, and for how long to leave it alone."""

    def __init__(self, code: str, message: str, pause_s: float = 0.0):
        super().__init__(message)
        self.code, self.message, self.pause_s = code, message, pause_s

    def as_dict(self, status: str = "skipped") -> dict:
        return {"status": status, "reason": self.code, "message": self.message}


def _retry_after_seconds(headers, default: float) -> float:
    """Retry-After is either seconds or an HTTP date."""
    value = (headers or {}).get("Retry-After") or (headers or {}).get("retry-after")
    if value is None:
        return default
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return default


def _track_details(item: dict) -> dict:
    """The fields of a ``GET /tracks/{id}`` answer that a recommendation shows."""
    album = item.get("album") or {}
    images = [i for i in album.get("images") or [] if i.get("url")]
    largest = max(images, key=lambda i: i.get("width") or 0) if images else None
    details = {
        "image_url": largest["url"] if largest else None,
        "album": album.get("name"),
        "duration_ms": item.get("duration_ms"),
        "preview_url": item.get("preview_url"),
        "external_url": (item.get("external_urls") or {}).get("spotify"),
    }
    return {k: v for k, v in details.items() if v is not None}


class SpotifyEnricher:
    """One per process: spotipy clients, a thread pool that bounds concurrency, an LRU cache of track details."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._timeout = settings.spotify_timeout_s
        self._cache: OrderedDict[str, dict] = OrderedDict()
        self._pool = ThreadPoolExecutor(max_workers=max(1, settings.spotify_concurrency), thread_name_prefix="spotify")
        self._token_lock = threading.Lock()
        self._paused_until = 0.0
        self._pause_cause: _Skip | None = None
        self._app = self._app_client() if self.configured else None
        self._user = self._user_client() if self.user_configured else None

    @property
    def configured(self) -> bool:
        return bool(self.settings.spotify_client_id and self.settings.spotify_client_secret)

    @property
    def user_configured(self) -> bool:
        s = self.settings
        return self.configured and bool(s.spotify_redirect_uri and s.spotify_refresh_token)

    def _client(self, auth_manager) -> spotipy.Spotify:
        # A plain session: no urllib3 retry adapter, so a 429 reaches us with its Retry-After instead of a
        # retry loop sleeping through our deadline.
        auth_manager.OAUTH_TOKEN_URL = self.settings.spotify_token_url  # instance attribute: no global change
        client = spotipy.Spotify(
            auth_manager=auth_manager, requests_session=requests.Session(), requests_timeout=self._timeout, retries=0, status_retries=0
        )
        client.prefix = self.settings.spotify_api_prefix.rstrip("/") + "/"
        return client

    def _app_client(self) -> spotipy.Spotify:
        s = self.settings
        auth = SpotifyClientCredentials(
            s.spotify_client_id,
            s.spotify_client_secret,
            cache_handler=MemoryCacheHandler(),
            requests_timeout=self._timeout,
            requests_session=requests.Session(),
        )
        return self._client(auth)

    def _user_client(self) -> spotipy.Spotify:
        """The user's client: a stored refresh token, exchanged for an access token on first use."""
        s = self.settings
        seed = {"access_token": "", "token_type": "Bearer", "expires_at": 0, "refresh_token": s.spotify_refresh_token, "scope": PLAYLIST_SCOPE}
        auth = SpotifyOAuth(
            s.spotify_client_id,
            s.spotify_client_secret,
            s.spotify_redirect_uri,
            scope=PLAYLIST_SCOPE,
            cache_handler=MemoryCacheHandler(seed),
            requests_timeout=self._timeout,
            requests_session=requests.Session(),
            open_browser=False,
        )
        return self._client(auth)

    # --- failure bookkeeping -------------------------------------------------------------------------------------

    def _classify(self, exc: BaseException) -> _Skip:
        cooldown = self.settings.spotify_cooldown_s
        if isinstance(exc, _Skip):
            return exc
        if isinstance(exc, SpotifyException):
            status = exc.http_status
            if status == 429:
                wait = _retry_after_seconds(exc.headers, cooldown)
                return _Skip("rate_limited", f"Spotify rate limit (429): retry after {wait:.0f} s", wait)
            if status == 401:
                return _Skip("unauthorized", "Spotify rejected the access token (401)", cooldown)
            if status == 403:
                return _Skip("forbidden", "Spotify refused access (403)", cooldown)
            if status >= 500:
                return _Skip("spotify_unavailable", f"Spotify answered {status}", cooldown)
            return _Skip("spotify_error", f"Spotify answered {status}", cooldown)
        if isinstance(exc, SpotifyOauthError):
            return _Skip("auth_failed", f"Spotify token request failed: {exc.error or exc}", cooldown)
        if isinstance(exc, (requests.Timeout, asyncio.TimeoutError, TimeoutError)):
            return _Skip("timeout", f"Spotify did not answer within {self._timeout:g} s", cooldown)
        if isinstance(exc, requests.ConnectionError):
            return _Skip("unreachable", "Spotify could not be reached", cooldown)
        return _Skip("spotify_error", f"Spotify call failed: {type(exc).__name__}", cooldown)

    def _pause(self, skip: _Skip) -> _Skip:
        """Leave Spotify alone for ``skip.pause_s``; returns ``skip`` so callers can raise it."""
        if skip.pause_s > 0:
            self._paused_until = time.monotonic() + skip.pause_s
            self._pause_cause = skip
            log.warning("Spotify paused for %.0f s: %s", skip.pause_s, skip.message)
        if skip.code == "unauthorized" and self._app is not None:
            self._app.auth_manager.cache_handler.save_token_to_cache(None)  # fetch a fresh token next time
        return skip

    def _paused(self) -> _Skip | None:
        left = self._paused_until - time.monotonic()
        if left <= 0 or self._pause_cause is None:
            return None
        return _Skip(self._pause_cause.code, f"{self._pause_cause.message}; Spotify paused for {left:.0f} s more")

    # --- track enrichment ----------------------------------------------------------------------------------------

    def _fetch_track(self, track_id: str) -> dict | None:
        """Runs in the pool. None when Spotify does not know the track (404): not a failure of Spotify."""
        if self._paused():  # a 429 or an outage happened while this call waited in the pool
            raise _Cancelled()
        try:
            with self._token_lock:  # one token request, not one per thread
                self._app.auth_manager.get_access_token(as_dict=False)
            item = self._app.track(track_id, market=self.settings.spotify_market)
        except SpotifyException as exc:
            if exc.http_status in (400, 404):
                return None
            raise self._pause(self._classify(exc)) from exc  # at once, so calls still queued do not go out
        except Exception as exc:  # noqa: BLE001 - token errors, timeouts, refused connections
            raise self._pause(self._classify(exc)) from exc
        return _track_details(item or {})

    def _remember(self, track_id: str, details: dict) -> None:
        self._cache[track_id] = details
        self._cache.move_to_end(track_id)
        while len(self._cache) > self.settings.spotify_cache_size:
            self._cache.popitem(last=False)

    async def enrich(self, tracks: list[dict]) -> dict:
        """Add Spotify details to ``tracks`` in place where available; return what happened (never raises)."""
        if self._app is None:
            return _Skip("no_credentials", "Spotify is not configured (SPOTIPY_CLIENT_ID, SPOTIPY_CLIENT_SECRET): catalog data only").as_dict()
        if not tracks:
            return {"status": "ok"}
        failure: _Skip | None = self._paused()
        wanted = [] if failure else list(dict.fromkeys(t["id"] for t in tracks if t["id"] not in self._cache))
        if wanted:
            failure = await self._fetch_all(wanted)
        enriched = 0
        for track in tracks:
            details = self._cache.get(track["id"])
            if details is not None:
                self._cache.move_to_end(track["id"])
            if details:
                track.update(details)
                enriched += 1
        if failure is not None:
            return failure.as_dict("partial" if enriched else "skipped")
        if enriched < len(tracks):
            return {"status": "partial", "reason": "not_found", "message": f"Spotify has no details for {len(tracks) - enriched} track(s)"}
        return {"status": "ok"}

    async def _fetch_all(self, track_ids: list[str]) -> _Skip | None:
        """Fetch through the pool until done, the first failure, or the deadline; keep whatever arrived."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        futures = {loop.run_in_executor(self._pool, self._fetch_track, tid): tid for tid in track_ids}
        pending = set(futures)
        failure: _Skip | None = None
        while pending and failure is None:
            remaining = deadline - loop.time()
            if remaining <= 0:
                failure = self._pause(self._classify(TimeoutError()))
                break
            done, pending = await asyncio.wait(pending, timeout=remaining, return_when=asyncio.FIRST_EXCEPTION)
            cancelled = False
            for future in done:
                exc = future.exception()
                if isinstance(exc, _Cancelled):
                    cancelled = True
                elif exc is not None:
                    failure = failure or self._classify(exc)
                else:  # {} for a track Spotify does not know: remembered too, so it is not asked again
                    self._remember(futures[future], future.result() or {})
            if cancelled and failure is None:  # another request's failure paused Spotify
                failure = self._paused() or _Skip("spotify_error", "Spotify calls were cancelled")
        for future in pending:
            future.cancel()
        return failure

    # --- playlists -----------------------------------------------------------------------------------------------

    async def create_playlist(self, name: str, uris: list[str], description: str = "") -> dict:
        """Create a private playlist for the configured user and fill it; a skip (never an error) when it cannot."""
        if self._user is None:
            return _Skip(
                "user_auth_not_configured", "playlist creation needs user OAuth (SPOTIPY_REDIRECT_URI and EMOTUNE_SPOTIFY_REFRESH_TOKEN)"
            ).as_dict()
        paused = self._paused()
        if paused:
            return paused.as_dict()

        def create() -> dict:
            playlist = self._user.current_user_playlist_create(name, public=False, description=description)
            if uris:
                self._user.playlist_add_items(playlist["id"], uris)
            return playlist

        loop = asyncio.get_running_loop()
        try:
            # Two calls, each bounded by requests' timeout; the wait bounds the pair.
            playlist = await asyncio.wait_for(loop.run_in_executor(self._pool, create), 2 * self._timeout)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a reported skip
            skip = self._classify(exc)
            if skip.code == "rate_limited":
                self._pause(skip)
            return skip.as_dict()
        return {"status": "created", "id": playlist.get("id"), "url": (playlist.get("external_urls") or {}).get("spotify"), "tracks": len(uris)}

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
