"""What the upload routes (speech, face) share: multipart only, a size cap read without buffering more, the served model."""

from __future__ import annotations

from fastapi import Request, UploadFile

from gateway.errors import ServiceError
from gateway.model_info import ModelInfo


async def require_multipart(request: Request) -> None:
    if "multipart/form-data" not in request.headers.get("content-type", ""):
        raise ServiceError(415, "unsupported_media_type", "send the file as multipart/form-data in the field 'file' (curl -F file=@PATH ...)")


async def read_upload(file: UploadFile, limit: int) -> bytes:
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise ServiceError(413, "file_too_large", f"the upload is larger than {limit} bytes, the limit")
    return data


def served_model(models: dict[str, ModelInfo], name: str) -> ModelInfo:
    info = models.get(name)
    if info is None:
        raise ServiceError(503, "model_unavailable", f"{name} is not served here (add it to EMOTUNE_MODELS)")
    return info
