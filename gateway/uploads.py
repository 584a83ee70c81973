"""What the HTTP edge does to a body before any route sees it: a cap while it streams in, and the upload helpers the
upload routes (speech, face, recommend) share."""

from __future__ import annotations

import asyncio

from fastapi import Request, UploadFile
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.error_handlers import RequestTimeout, RequestTooLarge, error_response
from gateway.errors import TooLarge, UnsupportedMedia


class BodyLimit:
    """Refuses a body over its route's limit before it is parsed or spooled: at once when Content-Length says so,
    else as soon as the streamed bytes pass the limit. ``limits`` maps a path to its cap (JSON routes are small);
    every other path gets ``default``. A body that stalls for ``timeout_s`` between chunks gets a 408."""

    def __init__(self, app: ASGIApp, default: int, limits: dict[str, int] | None = None, timeout_s: float = 30.0):
        self.app, self.default, self.limits, self.timeout_s = app, default, limits or {}, timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.limits.get(scope.get("path", ""), self.default)
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            error = RequestTooLarge(limit)
            return await error_response(error.status_code, error.code, error.detail)(scope, receive, send)
        received, complete = 0, False

        async def counted() -> Message:
            nonlocal received, complete
            if complete:  # after the body: the app listens for a disconnect, which may come at any time
                return await receive()
            try:
                async with asyncio.timeout(self.timeout_s):  # unlike wait_for, no task per chunk
                    message = await receive()
            except TimeoutError:
                raise RequestTimeout(self.timeout_s) from None
            received += len(message.get("body", b""))
            complete = message["type"] != "http.request" or not message.get("more_body", False)
            if received > limit:
                raise RequestTooLarge(limit)
            return message

        await self.app(scope, counted, send)


async def require_multipart(request: Request) -> None:
    if "multipart/form-data" not in request.headers.get("content-type", ""):
        raise UnsupportedMedia("unsupported_media_type", "send the file as multipart/form-data in the field 'file' (curl -F file=@PATH ...)")


async def require_json(request: Request) -> None:
    if "json" not in request.headers.get("content-type", ""):
        raise UnsupportedMedia("unsupported_media_type", "send the body as application/json")


async def read_upload(file: UploadFile, limit: int) -> bytes:
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise TooLarge("file_too_large", f"the upload is larger than {limit} bytes, the limit")
    return data
