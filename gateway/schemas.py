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
    confidence: float = Field(description="its probability")
    scores: dict[str, float] = Field(description="probability of every label the model knows")


class BatchEmotionResult(BaseModel):
    results: list[EmotionResult]
