"""The one settings object: read once from the environment (prefix ``EMOTUNE_``) or ``.env``."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[1]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EMOTUNE_", env_file=".env", extra="ignore")

    # Where the models live and how the gateway reaches them.
    model_repository: Path = Field(
        PROJECT_ROOT / "model_repository" / "python",
        description="Triton repository the gateway reads labels/tokenizers from (and the local backend runs).",
    )
    backend: Literal["triton", "local"] = Field("triton", description="triton: gRPC to tritonserver; local: ONNX Runtime in process")
    models: list[str] = Field([], description="Models the service loads and requires for readiness; empty: every model in the repository")
    triton_host: str = "127.0.0.1"
    triton_http_port: int = 8000
    triton_grpc_port: int = 8001
    triton_metrics_port: int = 8002
    triton_timeout_s: float = Field(5.0, description="Deadline of one inference call; past it the gateway answers 503")
    text_coalesce: bool = Field(
        True,
        description="Concurrent /text_emotion requests share inference calls (gateway/services/text_batcher.py); "
        "on: 1.08× the requests/s at concurrency 32, less CPU in the gateway and in Triton (bench.gateway_ab)",
    )
    text_coalesce_in_flight: int = Field(8, ge=1, description="Text calls in flight at once; requests arriving meanwhile join the next call")
    text_coalesce_max_tokens: int = Field(120, ge=1, description="Real tokens per coalesced call at most (a request's chunk goes whole)")
    triton_ready_timeout_s: float = Field(300.0, description="How long `emotune triton` waits for every model to be READY")
    local_threads: int = Field(2, description="ONNX Runtime intra-op threads for the in-process backend")

    # Gateway HTTP.
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    cors_origins: list[str] = Field(
        [],
        description="Origins whose pages may call the API from a browser (JSON list); empty = same "
        "origin only (the gateway's own page). Never '*' with API keys on",
    )

    # Admission, slow clients, shutdown (TEI-style: refuse fast rather than queue without bound).
    max_concurrent_requests: int = Field(
        256,
        ge=1,
        description="Requests in flight at most; beyond it 429 overloaded with Retry-After (health, readiness and metrics are never refused)",
    )
    max_connections: int = Field(1024, ge=1, description="Open connections at most (uvicorn's limit_concurrency; beyond it 503)")
    header_timeout_s: float = Field(10.0, gt=0, description="A request line and headers must arrive within this; else the connection closes")
    max_header_bytes: int = Field(64 * 1024, description="Request line and headers at most; beyond it 431")
    body_timeout_s: float = Field(30.0, gt=0, description="Longest wait for the next chunk of a request body; past it 408")
    keep_alive_timeout_s: int = Field(5, description="Idle keep-alive connections close after this")
    graceful_shutdown_s: int = Field(20, description="On SIGTERM: stop accepting, give in-flight requests this long, then stop")

    # Access: API keys and rate limits.
    api_keys: list[str] = Field(
        [],
        description="Bearer keys (JSON list); empty = open. When set, every route but /healthz, /readyz, "
        "/metrics and the page's static files needs `Authorization: Bearer <key>`",
    )
    rate_limit: str | None = Field(
        None, description="Per key (or per client address when open), in the `limits` notation, e.g. '20/second;600/minute'; empty = none"
    )
    rate_limit_storage: str = Field("memory://", description="memory:// (per process) or redis://host:port/db (shared by replicas)")

    # Request limits.
    max_text_chars: int = 5000
    max_batch_texts: int = 64
    max_upload_bytes: int = 20 * 1024 * 1024
    max_request_bytes: int | None = Field(
        None,
        description="Whole request body, counted as it streams in (Content-Length first), so an "
        "oversized upload is refused before it is spooled; default: room for /recommend's two files "
        "(2 × max_upload_bytes + 1 MiB)",
    )
    max_json_request_bytes: int | None = Field(
        None,
        description="Body cap of the JSON routes (/text_emotion, /music_recommendation), "
        "checked before parsing; default: room for the largest valid batch "
        "(max_batch_texts × max_text_chars × 6 bytes per escaped character + 64 KiB)",
    )
    max_audio_seconds: float = 60.0
    max_image_pixels: int = 40_000_000
    max_faces: int = Field(16, description="Faces classified per image at most (largest first)")

    # Recommendation.
    catalog_path: Path | None = Field(None, description="CSV or Parquet catalog; default: the catalog shipped in the package")
    recommendation_limit: int = Field(10, description="Tracks per list when a request gives no limit")
    max_recommendation_limit: int = Field(50, description="Largest limit a request may ask for")
    max_tracks_per_artist: int = 2
    recommendation_weights: dict[str, float] = Field(
        {"valence": 3.0, "energy": 2.0, "danceability": 1.0, "tempo": 0.75, "acousticness": 1.0, "mode": 0.5},
        description="Weight of each audio feature in the distance to a mood's target (features scaled by their catalog std)",
    )
    recommendation_cache_size: int = Field(1024, description="Rankings kept in memory (they are deterministic per request)")
    recommendation_mmr_lambda: float = Field(0.8, ge=0.0, le=1.0, description="MMR trade-off: 1 = nearest only, lower = more varied lists")
    fusion_weights: dict[str, float] = Field(
        {"text": 1.0, "speech": 1.0, "face": 1.0}, description="Prior weight of each modality in POST /recommend's late fusion"
    )

    # Spotify (spotipy reads SPOTIPY_* itself; these let tests and deployments redirect it).
    spotify_client_id: str | None = Field(None, validation_alias="SPOTIPY_CLIENT_ID")
    spotify_client_secret: str | None = Field(None, validation_alias="SPOTIPY_CLIENT_SECRET")
    spotify_redirect_uri: str | None = Field(None, validation_alias="SPOTIPY_REDIRECT_URI")
    spotify_api_prefix: str = "https://api.spotify.com/v1/"
    spotify_token_url: str = "https://accounts.spotify.com/api/token"
    spotify_timeout_s: float = 3.0
    spotify_concurrency: int = 4
    spotify_cooldown_s: float = Field(30.0, description="After a Spotify failure (not 429, which has Retry-After), leave it alone this long")
    spotify_cache_size: int = Field(10_000, description="Tracks whose Spotify details are kept in memory")
    spotify_market: str | None = Field(None, description="ISO country code passed to GET /tracks/{id}")
    spotify_refresh_token: str | None = Field(None, description="A user's refresh token (scope playlist-modify-*): enables playlist creation")

    log_level: str = "info"
    log_json: bool = Field(False, description="JSON log lines (one access line per request, with its request id) instead of uvicorn's text logs")

    @model_validator(mode="after")
    def _no_wildcard_with_keys(self):
        if self.api_keys and "*" in self.cors_origins:
            raise ValueError("EMOTUNE_CORS_ORIGINS may not be '*' when EMOTUNE_API_KEYS is set: list the origins that may call")
        return self

    @property
    def model_names(self) -> list[str]:
        if self.models:
            return self.models
        return sorted(p.parent.name for p in self.model_repository.glob("*/config.pbtxt"))

    @property
    def request_body_limit(self) -> int:
        """Derived from the upload limit unless set, so raising that limit does not leave the body cap behind."""
        return self.max_request_bytes if self.max_request_bytes is not None else 2 * self.max_upload_bytes + 1024 * 1024

    @property
    def json_body_limits(self) -> dict[str, int]:
        limit = self.max_json_request_bytes or self.max_batch_texts * self.max_text_chars * 6 + 64 * 1024
        return {"/text_emotion": limit, "/music_recommendation": limit}

    @property
    def triton_grpc_url(self) -> str:
        return f"{self.triton_host}:{self.triton_grpc_port}"


@lru_cache
def get_settings() -> Settings:
    return Settings()
