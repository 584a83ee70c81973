"""Request dependencies as ``Annotated`` types: routes declare the service they need, the app state holds it.

All ``async def``: FastAPI runs plain ``def`` dependencies in its thread pool, a hop per dependency per request.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request

from gateway.errors import Unavailable
from gateway.inference import InferenceBackend
from gateway.recommend.service import Recommender
from gateway.services.emotion import EmotionService
from gateway.services.multimodal import MultimodalRecommender
from gateway.settings import Settings


async def _settings(request: Request) -> Settings:
    return request.app.state.settings


async def _backend(request: Request) -> InferenceBackend:
    return request.app.state.backend


async def _emotions(request: Request) -> EmotionService:
    return request.app.state.emotions


async def _multimodal(request: Request) -> MultimodalRecommender:
    return request.app.state.multimodal


async def _optional_recommender(request: Request) -> Recommender | None:
    return getattr(request.app.state, "recommender", None)


async def _recommender(request: Request) -> Recommender:
    recommender = getattr(request.app.state, "recommender", None)
    if recommender is None:
        raise Unavailable("recommender_unavailable", "music recommendation is not set up in this gateway")
    return recommender


SettingsDep = Annotated[Settings, Depends(_settings)]
BackendDep = Annotated[InferenceBackend, Depends(_backend)]
EmotionsDep = Annotated[EmotionService, Depends(_emotions)]
MultimodalDep = Annotated[MultimodalRecommender, Depends(_multimodal)]
RecommenderDep = Annotated[Recommender, Depends(_recommender)]
OptionalRecommenderDep = Annotated[Recommender | None, Depends(_optional_recommender)]  # emotion routes: music is extra
RecommendQuery = Annotated[bool, Query(description="add `recommendations` for the detected emotion")]  # the emotion routes' switch
