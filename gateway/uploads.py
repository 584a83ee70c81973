"""What the upload routes (speech, face, recommend) share: a body cap while it streams in, multipart only, a size cap
per file, the served model."""

from __future__ import annotations

from fastapi import Request, UploadFile
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import RequestTooLarge, ServiceError, error_response
from gateway.model_info import ModelInfo


class BodyLimit:
    """Refuses a body over ``limit`` bytes before multipart parsing spools it: at once when Content-Length says so,
    else as soon as the streamed bytes pass the limit."""

    def __init__(self, app: ASGIApp, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.limit:
            error = RequestTooLarge(self.limit)
            return await error_response(error.status_code, error.code, error.detail)(scope, receive, send)
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise RequestTooLarge(self.limit)
            return message

        await self.app(scope, counted, send)


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
