"""The face part of ``EmotionService``: a photo → every face's emotion with its box, largest first.

``detect=true``: the gateway only decodes, EXIF-rotates and bounds the photo (``prepare_photo``, in a worker thread)
and sends it once to Triton's ``face_pipeline``, which detects (BlazeFace), crops and classifies with
``face_emotion`` inside Triton; the boxes come back in the sent pixels and are mapped onto the upright original.
``detect=false``: the image is an aligned face crop, classified directly by ``face_emotion``.
"""

from __future__ import annotations

import numpy as np
from starlette.concurrency import run_in_threadpool

from gateway.errors import InvalidInput
from gateway.postprocessing import calibrate, to_emotion
from gateway.preprocessing.image import Box, FaceInputs, Photo, prepare_faces, prepare_photo

FACE_MODEL, FACE_PIPELINE = "face_emotion", "face_pipeline"
NO_FACE = "no face was found in the image; send a clearer frontal face, or an aligned face crop with detect=false"


async def face_emotion(service, data: bytes, detect: bool = True) -> dict:
    """``service``: the ``EmotionService`` (settings, backend, served models)."""
    info = service.model(FACE_MODEL)
    s = service.settings
    if detect:
        pipeline = service.model(FACE_PIPELINE)
        photo: Photo = await run_in_threadpool(prepare_photo, data, s.max_image_pixels, s.max_upload_bytes)
        out = await service.backend.infer(pipeline.name, {"image": photo.pixels[None]}, ["boxes", "probabilities"])
        xywh, probabilities = out["boxes"][0][: s.max_faces], out["probabilities"][0][: s.max_faces]
        if len(xywh) == 0:
            raise InvalidInput("no_face", NO_FACE)
        boxes: list[Box] = photo.boxes(xywh)
        width, height = photo.width, photo.height
    else:
        faces: FaceInputs = await run_in_threadpool(
            prepare_faces, data, False, s.max_faces, s.max_image_pixels, s.max_upload_bytes, info.preprocessing
        )
        batch = np.ascontiguousarray(faces.inputs, dtype=np.float32)
        probabilities = (await service.backend.infer(info.name, {info.inputs[0].name: batch}, info.output_names))[info.output_names[0]]
        boxes, width, height = faces.boxes, faces.width, faces.height
    per_face = [{"box": box.as_dict(), **to_emotion(row, info.labels)} for box, row in zip(boxes, calibrate(probabilities, info.temperature))]
    largest = per_face[0]
    return {
        "emotion": largest["emotion"],
        "confidence": largest["confidence"],
        "scores": largest["scores"],
        "faces": per_face,
        "detected": detect,
        "width": width,
        "height": height,
    }
