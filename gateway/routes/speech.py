"""``POST /speech_emotion``: an uploaded audio file (multipart field ``file``) → emotion, scores, per-window timeline.

Decoding and features run in the gateway (``gateway.preprocessing.audio``, the module training used), in a worker
thread so the event loop keeps serving; the clip's windows go to ``speech_emotion`` as ONE batch.
"""

from __future__ import annotations

import json
from contextlib import asynccontextmanager
from functools import lru_cache
from pathlib import Path
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Depends, File, UploadFile
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from gateway.deps import BackendDep, ModelsDep, OptionalRecommenderDep, RecommendQuery, SettingsDep
from gateway.errors import ServiceError
from gateway.inference import InferenceBackend
from gateway.model_info import ModelInfo
from gateway.postprocessing import to_emotion
from gateway.preprocessing.audio import FeatureStats, SpeechFeatureConfig, SpeechInput, prepare_speech, warm_up
from gateway.recommend.service import attach_recommendations
from gateway.schemas import EmotionResult
from gateway.uploads import read_upload, require_multipart, served_model

MODEL = "speech_emotion"


@asynccontextmanager
async def _warm_up(app):
    """At start-up, when the speech model is served: run the audio path once so the first request is not slow."""
    info = getattr(app.state, "models", {}).get(MODEL)
    if info is not None:
        await run_in_threadpool(warm_up, preprocessing_for(info)[0])
    yield


router = APIRouter(tags=["emotion"], lifespan=_warm_up)


class WindowEmotion(EmotionResult):
    start: float = Field(description="window start in the file, seconds")
    end: float = Field(description="window end in the file, seconds")


class SpeechEmotionResponse(EmotionResult):
    emotion: str = Field(description="the clip's emotion: mean of its windows' probabilities")
    duration: float = Field(description="length of the decoded audio, seconds")
    timeline: list[WindowEmotion] | None = Field(None, description="one entry per 3 s window, for clips with more than one window")
    recommendations: list[dict] | None = None
    enrichment: dict | None = None


@lru_cache
def speech_preprocessing(model_dir: Path, features: str, stats_file: str) -> tuple[SpeechFeatureConfig, FeatureStats]:
    """The served model's feature settings and normalization statistics, read once per process."""
    return SpeechFeatureConfig.from_dict(json.loads(features)), FeatureStats.from_json(model_dir / stats_file)


def preprocessing_for(info: ModelInfo) -> tuple[SpeechFeatureConfig, FeatureStats]:
    pre = info.preprocessing
    config, stats = speech_preprocessing(info.directory, json.dumps(pre["features"], sort_keys=True), pre["feature_stats"])
    if config.dim != info.inputs[0].dims[-1] or stats.mean.shape[0] != config.dim:
        raise ServiceError(503, "model_misconfigured", f"{info.name}: feature settings do not match the model input")
    return config, stats


async def classify_speech(speech: SpeechInput, backend: InferenceBackend, info: ModelInfo) -> dict:
    """Run every window of the clip (one batch per ``max_batch_size`` windows) and build the answer."""
    arrays = {"features": speech.windows.astype(np.float32, copy=False), "lengths": speech.lengths}  # by input name
    outputs = []
    for start in range(0, len(speech.windows), info.max_batch_size):
        batch = {t.name: np.ascontiguousarray(arrays[t.name][start : start + info.max_batch_size]) for t in info.inputs}
        outputs.append((await backend.infer(info.name, batch, info.output_names))[info.output_names[0]])
    probabilities = np.concatenate(outputs)
    answer = to_emotion(probabilities.mean(axis=0), info.labels)
    answer["duration"] = round(speech.audio.duration_s, 3)
    if len(probabilities) > 1:
        answer["timeline"] = [
            {"start": s, "end": e, **to_emotion(row, info.labels)} for s, e, row in zip(speech.starts_s, speech.ends_s, probabilities)
        ]
    return answer



@router.post(
    "/speech_emotion",
    summary="emotion of speech in an audio file (WAV, FLAC, MP3, OGG, M4A/MP4, WebM, AIFF)",
    response_model=SpeechEmotionResponse,
    response_model_exclude_none=True,
    dependencies=[Depends(require_multipart)],
)
async def speech_emotion(backend: BackendDep, models: ModelsDep, settings: SettingsDep, recommender: OptionalRecommenderDep,
                         file: Annotated[UploadFile, File(description="the audio file")],
                         recommend: RecommendQuery = True):
    info = served_model(models, MODEL)
    data = await read_upload(file, settings.max_upload_bytes)
    config, stats = preprocessing_for(info)
    speech = await run_in_threadpool(prepare_speech, data, config, stats, settings.max_audio_seconds, settings.max_upload_bytes)
    answer = await classify_speech(speech, backend, info)
    if recommend:
        await attach_recommendations(recommender, [answer])
    return answer
