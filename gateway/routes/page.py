"""The listener's page: ``GET /`` and its static files (gateway/static), plus ``GET /ui/config``, what the page
needs to know about this gateway that the API does not say (limits, whether Spotify enrichment and playlists are on).

Files are served from a fixed list read at import, so no request path can reach outside the folder.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse
from starlette.exceptions import HTTPException

STATIC = Path(__file__).resolve().parents[1] / "static"
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
FILES = {p.name: p for p in STATIC.iterdir() if p.is_file() and p.suffix in MEDIA_TYPES} if STATIC.is_dir() else {}
NO_CACHE = {"Cache-Control": "no-cache"}  # revalidate: a new gateway version is picked up at once

router = APIRouter(include_in_schema=False)


@router.get("/")
async def index() -> FileResponse:
    return _file("index.html")


@router.get("/static/{name}")
async def static(name: str) -> FileResponse:
    return _file(name)


def _file(name: str) -> FileResponse:
    path = FILES.get(name)
    if path is None:
        raise HTTPException(404, f"no page file named {name!r}")
    return FileResponse(path, media_type=MEDIA_TYPES[path.suffix], headers=NO_CACHE)


@router.get("/ui/config")
async def ui_config(request: Request) -> dict:
    """Limits the page checks before uploading, and why enrichment or the playlist button is off (never secrets)."""
    state = request.app.state
    settings = state.settings
    recommender = getattr(state, "recommender", None)
    spotify = getattr(recommender, "spotify", None)
    app_auth = bool(spotify and spotify.configured)
    user_auth = bool(spotify and spotify.user_configured)
    return {
        "models": sorted(getattr(state, "models", {}) or {}),
        "max_audio_seconds": settings.max_audio_seconds,
        "max_upload_bytes": settings.max_upload_bytes,
        "max_text_chars": settings.max_text_chars,
        "recommendation_limit": settings.recommendation_limit,
        "max_recommendation_limit": settings.max_recommendation_limit,
        "recommender": recommender is not None,
        "api_key_required": bool(getattr(settings, "api_keys", None)),
        "enrichment": {
            "enabled": app_auth,
            "message": "album art and previews come from Spotify"
            if app_auth
            else "Spotify is not configured on this server (SPOTIPY_CLIENT_ID, SPOTIPY_CLIENT_SECRET), so tracks come "
            "from the catalog without album art or previews",
        },
        "playlist": {
            "enabled": user_auth,
            "message": "playlists are saved to the Spotify account this server is set up with"
            if user_auth
            else "saving a playlist needs a Spotify account set up on this server (SPOTIPY_REDIRECT_URI and "
            "EMOTUNE_SPOTIFY_REFRESH_TOKEN); it is not, so the button is off",
        },
    }
