"""``POST /text_emotion``: one text or a batch → the emotion of each (``EmotionService.text``)."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Depends, Response

from gateway.deps import EmotionsDep, OptionalRecommenderDep, RecommendQuery
from gateway.recommend.service import attach_recommendations
from gateway.schemas import BatchEmotionResult, EmotionResult, TextEmotionRequest, error_responses
from gateway.uploads import require_json

router = APIRouter(tags=["emotion"])


@router.post(
    "/text_emotion",
    summary="emotion of a text (or a batch of texts)",
    dependencies=[Depends(require_json)],
    responses={200: {"model": EmotionResult | BatchEmotionResult}, **error_responses(400, 401, 413, 415, 422, 429, 503)},
)
async def text_emotion(body: TextEmotionRequest, emotions: EmotionsDep, recommender: OptionalRecommenderDep, recommend: RecommendQuery = True):
    texts = [body.text] if body.text is not None else body.texts
    results = await emotions.text(texts)
    if recommend:
        await attach_recommendations(recommender, results)
    # Bytes straight from orjson: FastAPI's jsonable_encoder would walk every score of every answer (bench/tuning: "orjson").
    return Response(
        orjson.dumps(results[0] if body.text is not None else {"results": results}, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json"
    )
