"""``POST /speech_emotion``: an uploaded audio file (multipart field ``file``) → emotion, scores, per-window timeline
(``EmotionService.speech``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, UploadFile
from pydantic import Field

from gateway.deps import EmotionsDep, OptionalRecommenderDep, RecommendQuery, SettingsDep
from gateway.recommend.service import attach_recommendations
from gateway.schemas import EmotionResult, error_responses
from gateway.uploads import read_upload, require_multipart

router = APIRouter(tags=["emotion"])


class WindowEmotion(EmotionResult):
    start: float = Field(description="window start in the file, seconds")
    end: float = Field(description="window end in the file, seconds")


class SpeechEmotionResponse(EmotionResult):
    emotion: str = Field(description="the clip's emotion: mean of its windows' probabilities")
    duration: float = Field(description="length of the decoded audio, seconds")
    timeline: list[WindowEmotion] | None = Field(None, description="one entry per 3 s window, for clips with more than one window")


@router.post(
    "/speech_emotion",
    summary="emotion of speech in an audio file (WAV, FLAC, MP3, OGG, M4A/MP4, WebM, AIFF)",
    response_model=SpeechEmotionResponse,
    response_model_exclude_none=True,
    dependencies=[Depends(require_multipart)],
    responses=error_responses(400, 401, 413, 415, 422, 429, 503),
)
async def speech_emotion(
    emotions: EmotionsDep,
    settings: SettingsDep,
    recommender: OptionalRecommenderDep,
    file: Annotated[UploadFile, File(description="the audio file")],
    recommend: RecommendQuery = True,
):
    answer = await emotions.speech(await read_upload(file, settings.max_upload_bytes))
    if recommend:
        await attach_recommendations(recommender, [answer])
    return answer
