"""``POST /facial_emotion``: an uploaded photo (multipart field ``file``) → the emotion of every face, largest first
(``EmotionService.face``). The top-level ``emotion``/``confidence``/``scores`` are the largest face's; no face is a
422 ``no_face`` (never a guess on the whole frame); ``detect=false`` classifies an already aligned face crop."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Query, UploadFile
from pydantic import BaseModel, Field

from gateway.deps import EmotionsDep, OptionalRecommenderDep, RecommendQuery, SettingsDep
from gateway.recommend.service import attach_recommendations
from gateway.schemas import EmotionResult, error_responses
from gateway.uploads import read_upload, require_multipart

router = APIRouter(tags=["emotion"])


class FaceBox(BaseModel):
    x: int = Field(description="left edge, pixels, in the upright (EXIF-rotated) image")
    y: int = Field(description="top edge, pixels")
    width: int
    height: int


class FaceEmotion(EmotionResult):
    box: FaceBox


class FacialEmotionResponse(EmotionResult):
    emotion: str = Field(description="the largest face's emotion")
    faces: list[FaceEmotion] = Field(description="every face found, largest first (with detect=false: the whole image)")
    detected: bool = Field(description="false when the client sent detect=false")
    width: int = Field(description="the upright image's width, pixels")
    height: int = Field(description="the upright image's height, pixels")


@router.post(
    "/facial_emotion",
    summary="emotion of every face in a photo (JPEG, PNG, WebP); the largest face is the answer",
    response_model=FacialEmotionResponse,
    response_model_exclude_none=True,
    dependencies=[Depends(require_multipart)],
    responses=error_responses(400, 401, 413, 415, 422, 429, 503),
)
async def facial_emotion(
    emotions: EmotionsDep,
    settings: SettingsDep,
    recommender: OptionalRecommenderDep,
    file: Annotated[UploadFile, File(description="the photo")],
    detect: Annotated[bool, Query(description="false: the image is already an aligned face crop (like FER2013); skip detection")] = True,
    recommend: RecommendQuery = True,
):
    answer = await emotions.face(await read_upload(file, settings.max_upload_bytes), detect=detect)
    if recommend:
        await attach_recommendations(recommender, [answer])
    return answer
