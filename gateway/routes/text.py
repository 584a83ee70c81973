"""``POST /text_emotion``: tokenize in the gateway, run ``text_emotion`` on the backend, answer per text."""

from __future__ import annotations

import asyncio

import numpy as np
from fastapi import APIRouter, Depends, Request

from gateway.deps import BackendDep, ModelsDep, OptionalRecommenderDep, RecommendQuery, SettingsDep
from gateway.errors import ServiceError
from gateway.inference import InferenceBackend
from gateway.model_info import ModelInfo
from gateway.postprocessing import to_emotion
from gateway.preprocessing.text import load_tokenizer
from gateway.recommend.service import attach_recommendations
from gateway.schemas import TextEmotionRequest

MODEL = "text_emotion"
router = APIRouter(tags=["emotion"])


def validate_texts(texts: list[str], max_chars: int, max_batch: int) -> None:
    if not texts:
        raise ServiceError(422, "empty_batch", "'texts' must hold at least one text")
    if len(texts) > max_batch:
        raise ServiceError(413, "batch_too_large", f"at most {max_batch} texts per request, got {len(texts)}")
    for i, text in enumerate(texts):
        where = "text" if len(texts) == 1 else f"texts[{i}]"
        if not text.strip():
            raise ServiceError(422, "empty_text", f"{where} is empty or whitespace")
        if len(text) > max_chars:
            raise ServiceError(413, "text_too_long", f"{where} has {len(text)} characters; the limit is {max_chars}")


async def classify_texts(texts: list[str], backend: InferenceBackend, info: ModelInfo) -> list[dict]:
    """Emotion of each text. Texts are sorted by length and sent in chunks of the model's max batch size."""
    pre = info.preprocessing
    tokenizer = load_tokenizer(info.directory, pre["tokenizer"], pre["max_length"], pre.get("pad_to_multiple", 1))
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    chunks = [order[i : i + info.max_batch_size] for i in range(0, len(order), info.max_batch_size)]
    outputs = await asyncio.gather(
        *(backend.infer(info.name, tokenizer.encode([texts[i] for i in chunk]), info.output_names) for chunk in chunks)
    )
    probabilities = np.empty((len(texts), len(info.labels)), dtype=np.float32)
    for chunk, out in zip(chunks, outputs):
        probabilities[chunk] = out[info.output_names[0]]
    return [to_emotion(row, info.labels) for row in probabilities]


async def require_json(request: Request) -> None:
    if "json" not in request.headers.get("content-type", ""):
        raise ServiceError(415, "unsupported_media_type", "send the body as application/json")


@router.post("/text_emotion", summary="emotion of a text (or a batch of texts)", dependencies=[Depends(require_json)])
async def text_emotion(body: TextEmotionRequest, request: Request, backend: BackendDep, models: ModelsDep, settings: SettingsDep,
                       recommender: OptionalRecommenderDep,
                       recommend: RecommendQuery = True):
    texts = [body.text] if body.text is not None else body.texts
    validate_texts(texts, settings.max_text_chars, settings.max_batch_texts)
    results = await classify_texts(texts, backend, models[MODEL])
    if recommend:
        await attach_recommendations(recommender, results)
    return results[0] if body.text is not None else {"results": results}
