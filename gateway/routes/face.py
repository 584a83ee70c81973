"""``POST /facial_emotion``: an uploaded photo (multipart field ``file``) → the emotion of every face, largest first.

Decoding, face detection and cropping run in the gateway (``gateway.preprocessing.image``, the module training
used), in a worker thread so the event loop keeps serving; the faces go to ``face_emotion`` as ONE batch.
The answer's top-level ``emotion``/``confidence``/``scores`` are the largest face's (the text endpoint's shape);
``faces`` lists every face with its box. No face: 422 ``no_face`` (never a guess on the whole frame). Clients that
already send an aligned face crop (like the FER2013 images) pass ``detect=false``.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
from fastapi import APIRouter, Depends, File, Query, UploadFile
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from gateway.deps import BackendDep, ModelsDep, OptionalRecommenderDep, RecommendQuery, SettingsDep
from gateway.inference import InferenceBackend
from gateway.model_info import ModelInfo
from gateway.postprocessing import to_emotion
from gateway.preprocessing.image import FaceInputs, prepare_faces
from gateway.recommend.service import attach_recommendations
from gateway.schemas import EmotionResult
from gateway.uploads import read_upload, require_multipart, served_model

MODEL = "face_emotion"
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
    recommendations: list[dict] | None = None
    enrichment: dict | None = None


async def classify_faces(faces: FaceInputs, backend: InferenceBackend, info: ModelInfo) -> dict:
    outputs = []
    for start in range(0, len(faces.inputs), info.max_batch_size):
        batch = np.ascontiguousarray(faces.inputs[start : start + info.max_batch_size], dtype=np.float32)
        outputs.append((await backend.infer(info.name, {info.inputs[0].name: batch}, info.output_names))[info.output_names[0]])
    probabilities = np.concatenate(outputs)
    per_face = [{"box": box.as_dict(), **to_emotion(row, info.labels)} for box, row in zip(faces.boxes, probabilities)]
    largest = per_face[0]
    return {"emotion": largest["emotion"], "confidence": largest["confidence"], "scores": largest["scores"], "faces": per_face,
            "detected": faces.detected, "width": faces.width, "height": faces.height}



@router.post(
    "/facial_emotion",
    summary="emotion of every face in a photo (JPEG, PNG, WebP); the largest face is the answer",
    response_model=FacialEmotionResponse,
    response_model_exclude_none=True,
    dependencies=[Depends(require_multipart)],
    responses={422: {"description": "no face found (`no_face`), or a truncated/corrupt image"},
               413: {"description": "over the upload size or pixel limit"}, 415: {"description": "not a JPEG, PNG or WebP image"}},
)
async def facial_emotion(backend: BackendDep, models: ModelsDep, settings: SettingsDep,
                         recommender: OptionalRecommenderDep,
                         file: Annotated[UploadFile, File(description="the photo")],
                         detect: Annotated[bool, Query(description="false: the image is already an aligned face crop (like FER2013); "
                                                                   "skip detection")] = True,
                         recommend: RecommendQuery = True):
    info = served_model(models, MODEL)
    data = await read_upload(file, settings.max_upload_bytes)
    faces = await run_in_threadpool(prepare_faces, data, detect, settings.max_faces, settings.max_image_pixels, settings.max_upload_bytes,
                                    info.preprocessing)
    answer = await classify_faces(faces, backend, info)
    if recommend:
        await attach_recommendations(recommender, [answer])
    return answer
