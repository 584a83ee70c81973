"""Request and response bodies shared by the routes (the original design's shapes)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, StrictStr, model_validator


class TextEmotionRequest(BaseModel):
    """Either ``text`` (the original request) or ``texts`` (a batch)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"text": "I am feeling very happy today!"}]})
    text: StrictStr | None = Field(None, description="one text")
    texts: list[StrictStr] | None = Field(None, description="a batch of texts")

    @model_validator(mode="after")
    def _one_of(self):
        if (self.text is None) == (self.texts is None):
            raise ValueError("give exactly one of 'text' or 'texts'")
        return self


class EmotionResult(BaseModel):
    emotion: str = Field(description="the most likely emotion")
    confidence: float = Field(description="its probability, calibrated on the model's validation data")
    scores: dict[str, float] = Field(description="probability of every label the model knows")
    recommendations: list[dict] | None = Field(None, description="tracks for the emotion (unless ?recommend=false)")
    enrichment: dict | None = Field(None, description="what Spotify added to the tracks, or why it did not")


class BatchEmotionResult(BaseModel):
    results: list[EmotionResult]


class ErrorBody(BaseModel):
    """Every error answer: a stable code, a sentence for people, and the request id to quote."""

    error: str = Field(description="stable code, e.g. no_face, text_too_long, model_unavailable")
    message: str = Field(description="what was wrong, or that the service is unavailable")
    details: list | None = Field(None, description="per-field problems, when there are several")
    request_id: str | None = Field(None, description="the X-Request-ID of this request")


_STATUS_MEANING = {
    400: "malformed request (invalid JSON, empty file)",
    401: "missing or wrong API key (when EMOTUNE_API_KEYS is set)",
    413: "over a size limit (body, file, pixels, seconds, batch, characters)",
    415: "unsupported content type or file format",
    422: "valid request the models cannot use (no face, silent audio, empty text, unknown emotion)",
    429: "too many requests in flight, or over the rate limit (see Retry-After)",
    503: "a model or Triton is unavailable, or a deadline passed",
}


def error_responses(*statuses: int) -> dict:
    """OpenAPI ``responses`` for the error statuses a route can give, each with the error schema."""
    return {status: {"model": ErrorBody, "description": _STATUS_MEANING[status]} for status in statuses}
