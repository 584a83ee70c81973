"""``POST /music_recommendation`` (music for a named emotion) and ``POST /recommend`` (music for text, speech and/or
a face, fused)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Request, UploadFile
from pydantic import BaseModel, ConfigDict, Field, StrictStr
from starlette.concurrency import run_in_threadpool

from gateway.deps import BackendDep, ModelsDep, RecommenderDep, SettingsDep
from gateway.errors import ServiceError
from gateway.preprocessing import InvalidInput
from gateway.preprocessing.audio import prepare_speech
from gateway.preprocessing.image import prepare_faces
from gateway.recommend.fusion import NothingToFuse, fuse
from gateway.recommend.ranker import Filters
from gateway.routes.face import MODEL as FACE_MODEL
from gateway.routes.face import classify_faces
from gateway.routes.speech import MODEL as SPEECH_MODEL
from gateway.routes.speech import classify_speech
from gateway.routes.speech import preprocessing_for as speech_preprocessing_for
from gateway.routes.text import MODEL as TEXT_MODEL
from gateway.routes.text import classify_texts, validate_texts
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
    playlist: StrictStr | None = Field(None, min_length=1, max_length=100,
                                       description="also create a Spotify playlist of this name (needs user OAuth)")


@router.post("/music_recommendation", summary="tracks that fit an emotion")
async def music_recommendation(body: MusicRecommendationRequest, recommender: RecommenderDep) -> dict:
    filters = body.filters.to_filters() if body.filters else None
    return await recommender.recommend(body.emotion, limit=body.limit, strategy=body.strategy, filters=filters,
                                       max_per_artist=body.max_per_artist, enrich=body.enrich, playlist_name=body.playlist)


def _model(models, name: str, field: str):
    if name not in models:
        raise ServiceError(422, "modality_not_served", f"{field}: the {name} model is not loaded by this gateway")
    return models[name]


async def _text_emotion(text: str, backend, models, settings) -> dict:
    validate_texts([text], settings.max_text_chars, 1)
    return (await classify_texts([text], backend, _model(models, TEXT_MODEL, "text")))[0]


async def _speech_emotion(upload: UploadFile, backend, models, settings) -> dict:
    """The speech route's steps (gateway.routes.speech): size check, features in a worker thread, inference."""
    info = _model(models, SPEECH_MODEL, "audio")
    data = await read_upload(upload, settings.max_upload_bytes)
    config, stats = speech_preprocessing_for(info)
    speech = await run_in_threadpool(prepare_speech, data, config, stats, settings.max_audio_seconds, settings.max_upload_bytes)
    return await classify_speech(speech, backend, info)


async def _face_emotion(upload: UploadFile, backend, models, settings) -> dict:
    """The face route's steps (gateway.routes.face): detection and crops in a worker thread, inference."""
    info = _model(models, FACE_MODEL, "image")
    data = await read_upload(upload, settings.max_upload_bytes)
    faces = await run_in_threadpool(prepare_faces, data, True, settings.max_faces, settings.max_image_pixels,
                                    settings.max_upload_bytes, info.preprocessing)
    return await classify_faces(faces, backend, info)


async def _labelled(field: str, work) -> dict:
    """Run one modality; its 4xx errors name the form field they came from."""
    try:
        return await work
    except ServiceError as exc:
        raise ServiceError(exc.status, exc.code, exc.message if exc.message.startswith(f"{field}:") else f"{field}: {exc.message}",
                           exc.details) from None
    except InvalidInput as exc:
        raise ServiceError(exc.status, exc.code, f"{field}: {exc.message}") from None


@router.post("/recommend", summary="music for any of a text, a voice recording and a face photo (multipart)")
async def recommend(
    request: Request,
    backend: BackendDep,
    models: ModelsDep,
    settings: SettingsDep,
    recommender: RecommenderDep,
    text: Annotated[str | None, Form(description="a text to read the emotion from")] = None,
    audio: Annotated[UploadFile | None, File(description="a voice recording (WAV, FLAC, MP3, ...)")] = None,
    image: Annotated[UploadFile | None, File(description="a photo with a face (JPEG, PNG, WebP)")] = None,
    limit: Annotated[int | None, Form()] = None,
    strategy: Annotated[Literal["match", "uplift"], Form()] = "match",
) -> dict:
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        raise ServiceError(415, "unsupported_media_type", "send multipart/form-data with any of the fields text, audio, image")
    work: dict[str, object] = {}
    if text is not None and text.strip():
        work["text"] = _labelled("text", _text_emotion(text, backend, models, settings))
    if audio is not None:
        work["speech"] = _labelled("audio", _speech_emotion(audio, backend, models, settings))
    if image is not None:
        work["face"] = _labelled("image", _face_emotion(image, backend, models, settings))
    if not work:
        raise ServiceError(422, "nothing_to_recommend_from", "give at least one of the fields text, audio, image")

    names = list(work)
    outcomes = await asyncio.gather(*work.values(), return_exceptions=True)
    for outcome in outcomes:  # the first failure, in field order, is the answer
        if isinstance(outcome, BaseException):
            raise outcome
    modalities = dict(zip(names, outcomes))
    try:
        fused = fuse(modalities, settings.fusion_weights)
    except NothingToFuse:
        raise ServiceError(422, "nothing_to_recommend_from", "no modality gave a result") from None
    music = await recommender.recommend(fused["mood"], limit=limit, strategy=strategy)
    return {
        "emotion": fused["emotion"],
        "confidence": fused["confidence"],
        "mood": music["mood"],
        "fusion": {"scores": fused["scores"], "weights": fused["weights"], "agreement": fused["agreement"]},
        "modalities": modalities,
        "strategy": strategy,
        "recommendations": music["recommendations"],
        "enrichment": music["enrichment"],
    }
