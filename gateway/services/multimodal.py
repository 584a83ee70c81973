"""``MultimodalRecommender``: ``POST /recommend``'s logic. Any of a text, a voice clip and a photo → each modality's
emotion (``EmotionService``, concurrently) → late fusion → music for the fused mood (``Recommender``)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass

from gateway.errors import EmotuneError, InvalidInput
from gateway.metrics import set_modality
from gateway.recommend.fusion import NothingToFuse, fuse
from gateway.recommend.service import Recommender
from gateway.services.emotion import EmotionService


@dataclass(frozen=True)
class MultimodalInput:
    """What the client sent; the form field each modality came from names its errors."""

    text: str | None = None
    audio: bytes | None = None
    image: bytes | None = None


class MultimodalRecommender:
    def __init__(self, emotions: EmotionService, recommender: Recommender, fusion_weights: dict[str, float]):
        self.emotions, self.recommender, self.fusion_weights = emotions, recommender, fusion_weights

    async def recommend(self, given: MultimodalInput, limit: int | None = None, strategy: str = "match") -> dict:
        work: dict[str, tuple[str, Awaitable[dict]]] = {}
        if given.text is not None and given.text.strip():
            work["text"] = ("text", self.emotions.text([given.text], max_batch=1))
        if given.audio is not None:
            work["speech"] = ("audio", self.emotions.speech(given.audio))
        if given.image is not None:
            work["face"] = ("image", self.emotions.face(given.image, detect=True))
        if not work:
            raise InvalidInput("nothing_to_recommend_from", "give at least one of the fields text, audio, image")
        set_modality("+".join(work))

        outcomes = await asyncio.gather(*(call for _, call in work.values()), return_exceptions=True)
        for (field, _), outcome in zip(work.values(), outcomes):  # the first failure, in field order, is the answer
            if isinstance(outcome, EmotuneError):
                raise outcome.with_prefix(field) from None
            if isinstance(outcome, BaseException):
                raise outcome
        modalities = {name: (outcome[0] if name == "text" else outcome) for name, outcome in zip(work, outcomes)}
        try:
            fused = fuse(modalities, self.fusion_weights)
        except NothingToFuse:
            raise InvalidInput("nothing_to_recommend_from", "no modality gave a result") from None
        music = await self.recommender.recommend(fused["mood"], limit=limit, strategy=strategy)
        return {
            "emotion": fused["emotion"],
            "confidence": fused["confidence"],
            "mood": music["mood"],
            "fusion": {"scores": fused["scores"], "weights": fused["weights"], "agreement": fused["agreement"]},
            "modalities": modalities,
            "strategy": strategy,
            "recommendations": music["recommendations"],
            "enrichment": music["enrichment"],
        }
