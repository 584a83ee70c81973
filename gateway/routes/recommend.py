"""``POST /music_recommendation`` (music for a named emotion) and ``POST /recommend`` (music for text, speech and/or
a face, fused): adapters to ``Recommender`` and ``MultimodalRecommender``."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Request, UploadFile
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from gateway.deps import MultimodalDep, RecommenderDep, SettingsDep
from gateway.errors import UnsupportedMedia
from gateway.recommend.ranker import Filters
from gateway.schemas import error_responses
from gateway.services.multimodal import MultimodalInput
from gateway.uploads import read_upload

router = APIRouter(tags=["recommendation"])


class TrackFilters(BaseModel):
    model_config = ConfigDict(extra="forbid")
    year_min: int | None = Field(None, ge=1900, le=2100, description="earliest release year")
    year_max: int | None = Field(None, ge=1900, le=2100, description="latest release year")
    min_popularity: int | None = Field(None, ge=0, le=100, description="Spotify popularity, 0–100")

    def to_filters(self) -> Filters:
        return Filters(self.year_min, self.year_max, self.min_popularity)


class MusicRecommendationRequest(BaseModel):
    """The original request (``emotion``, ``limit``) plus optional strategy, filters, diversity and a playlist."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"emotion": "joy", "limit": 10}]})
    emotion: StrictStr = Field(min_length=1, max_length=64, description="a model label (joy, sad, ...) or a mood word")
    limit: int | None = Field(None, description="tracks to return; default and maximum come from the settings")
    strategy: Literal["match", "uplift"] = Field("match", description="match the mood, or start there and lift it")
    filters: TrackFilters | None = None
    max_per_artist: int | None = Field(None, ge=1, description="diversity cap; default from the settings")
    enrich: bool = Field(True, description="add album art and details from Spotify when it is configured")
    playlist: StrictStr | None = Field(
        None, min_length=1, max_length=100, description="also create a Spotify playlist of this name (needs user OAuth)"
    )


@router.post("/music_recommendation", summary="tracks that fit an emotion", responses=error_responses(400, 401, 413, 415, 422, 429, 503))
async def music_recommendation(body: MusicRecommendationRequest, recommender: RecommenderDep) -> dict:
    filters = body.filters.to_filters() if body.filters else None
    return await recommender.recommend(
        body.emotion,
        limit=body.limit,
        strategy=body.strategy,
        filters=filters,
        max_per_artist=body.max_per_artist,
        enrich=body.enrich,
        playlist_name=body.playlist,
    )


@router.post(
    "/recommend",
    summary="music for any of a text, a voice recording and a face photo (multipart)",
    responses=error_responses(400, 401, 413, 415, 422, 429, 503),
)
async def recommend(
    request: Request,
    multimodal: MultimodalDep,
    settings: SettingsDep,
    text: Annotated[str | None, Form(description="a text to read the emotion from")] = None,
    audio: Annotated[UploadFile | None, File(description="a voice recording (WAV, FLAC, MP3, ...)")] = None,
    image: Annotated[UploadFile | None, File(description="a photo with a face (JPEG, PNG, WebP)")] = None,
    limit: Annotated[int | None, Form()] = None,
    strategy: Annotated[Literal["match", "uplift"], Form()] = "match",
) -> dict:
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        raise UnsupportedMedia("unsupported_media_type", "send multipart/form-data with any of the fields text, audio, image")
    given = MultimodalInput(
        text=text,
        audio=None if audio is None else await read_upload(audio, settings.max_upload_bytes),
        image=None if image is None else await read_upload(image, settings.max_upload_bytes),
    )
    return await multimodal.recommend(given, limit=limit, strategy=strategy)
