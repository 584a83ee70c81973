"""The kinds of failure a client is told about. Each kind fixes its HTTP status; the code names the problem.

Plain Python (no FastAPI), so preprocessing and training can raise them; ``gateway.error_handlers`` turns every kind
into the one JSON shape ``{"error": code, "message": text, "request_id": ...}``.
"""

from __future__ import annotations


class EmotuneError(Exception):
    """A failure with a stable ``code``, a ``message`` for the client and, optionally, an ``internal`` detail that
    goes to the log only (addresses, library messages)."""

    status = 500

    def __init__(self, code: str, message: str, details: list | None = None, internal: str | None = None):
        super().__init__(message)
        self.code, self.message, self.details, self.internal = code, message, details or [], internal

    def headers(self) -> dict[str, str] | None:
        return None

    def with_prefix(self, prefix: str) -> EmotuneError:
        """The same failure, its message prefixed with the input it came from (``/recommend``'s form fields)."""
        if self.message.startswith(f"{prefix}:"):
            return self
        prefixed = type(self).__new__(type(self))
        prefixed.__dict__.update(self.__dict__, message=f"{prefix}: {self.message}")
        Exception.__init__(prefixed, prefixed.message)
        return prefixed


class BadRequest(EmotuneError):
    """The request itself is malformed (empty file, invalid JSON)."""

    status = 400


class Unauthorized(EmotuneError):
    status = 401

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": "Bearer"}


class TooLarge(EmotuneError):
    """Over a size limit: body, file, pixels, seconds, batch."""

    status = 413


class UnsupportedMedia(EmotuneError):
    """A content type or file format this service does not take."""

    status = 415


class InvalidInput(EmotuneError):
    """Well-formed, but the models cannot use it (no face, silent audio, an unknown emotion)."""

    status = 422


class Overloaded(EmotuneError):
    """Too many requests in flight, or a client over its rate limit; ``retry_after`` seconds go in ``Retry-After``."""

    status = 429

    def __init__(self, code: str, message: str, retry_after: int = 1, **kwargs):
        super().__init__(code, message, **kwargs)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class Unavailable(EmotuneError):
    """A dependency is down or missing: try again later, or elsewhere."""

    status = 503


class ModelNotServed(Unavailable):
    def __init__(self, model: str):
        super().__init__("model_unavailable", f"the {model} model is not served by this gateway (EMOTUNE_MODELS)")


class ModelUnavailable(Unavailable):
    """The backend is unreachable, the model is not ready, or the call ran past its deadline."""

    def __init__(self, model: str, internal: str):
        super().__init__("model_unavailable", f"the {model} model is unavailable right now; try again shortly", internal=internal)
        self.model = model
