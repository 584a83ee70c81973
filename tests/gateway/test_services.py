"""The service layer in process: ``EmotionService`` and ``MultimodalRecommender`` over the committed models' metadata,
tokenizer and preprocessing, with a small ``InferenceBackend`` that answers fixed probabilities (the end-to-end tests
run the same services against the real tritonserver). Fast: no server, no model run."""

from __future__ import annotations

import asyncio
import io

import numpy as np
import pytest
import soundfile as sf

from gateway.errors import EmotuneError, InvalidInput, ModelNotServed, ModelUnavailable, TooLarge
from gateway.model_info import load_models
from gateway.postprocessing import calibrate
from gateway.recommend.service import Recommender
from gateway.services.emotion import SPEECH_MODEL, TEXT_MODEL, EmotionService
from gateway.services.face import FACE_MODEL
from gateway.services.multimodal import MultimodalInput, MultimodalRecommender
from gateway.settings import Settings
from tests.conftest import REPOSITORY


class FixedBackend:
    """Answers every row with the same probabilities (a one-hot on ``label`` of each model unless told otherwise),
    and records what it was sent."""

    def __init__(self, models, top: dict[str, int] | None = None, fail: set[str] | None = None):
        self.models, self.top, self.fail, self.calls = models, top or {}, fail or set(), []

    async def infer(self, model, inputs, outputs):
        self.calls.append((model, {k: v.shape for k, v in inputs.items()}))
        if model in self.fail:
            raise ModelUnavailable(model, "test backend: down")
        rows = next(iter(inputs.values())).shape[0]
        labels = self.models[model].labels
        probabilities = np.full((rows, len(labels)), 0.02, dtype=np.float32)
        probabilities[:, self.top.get(model, 0)] = 1.0 - 0.02 * (len(labels) - 1)
        return {outputs[0]: probabilities}

    async def ready(self, models):
        return {m: True for m in models}

    async def close(self):
        pass


@pytest.fixture(scope="module")
def models():
    return load_models(REPOSITORY, [TEXT_MODEL, SPEECH_MODEL, FACE_MODEL])


def service(models, **backend_kwargs) -> tuple[EmotionService, FixedBackend]:
    backend = FixedBackend(models, **backend_kwargs)
    return EmotionService(Settings(text_coalesce=False), backend, models), backend


def wav_bytes(seconds: float = 2.0, rate: int = 16000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    tone = (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    buffer = io.BytesIO()
    sf.write(buffer, tone, rate, format="WAV")
    return buffer.getvalue()


async def test_text_sorts_by_length_chunks_by_the_model_batch_and_keeps_the_order(models):
    emotions, backend = service(models, top={TEXT_MODEL: 2})
    texts = [f"text number {i} " * (1 + i % 5) for i in range(70)]
    results = await emotions.text(texts, max_batch=70)
    assert len(results) == 70 and {r["emotion"] for r in results} == {models[TEXT_MODEL].labels[2]}
    assert [shape["input_ids"][0] for _, shape in backend.calls] == [32, 32, 6]  # max_batch_size 32


@pytest.mark.parametrize(
    "texts, error",
    [
        ([], "empty_batch"),
        (["   "], "empty_text"),
        (["\x00\x01"], "empty_text"),
        (["ok \ud800"], "invalid_text"),
        (["x" * 5001], "text_too_long"),
        (["a"] * 65, "batch_too_large"),
    ],
)
async def test_text_refuses_what_it_cannot_answer(models, texts, error):
    emotions, backend = service(models)
    with pytest.raises(EmotuneError) as raised:
        await emotions.text(texts)
    assert raised.value.code == error and 400 <= raised.value.status < 500
    assert backend.calls == []  # refused before any inference


async def test_a_model_not_served_is_unavailable_on_every_modality(models):
    emotions = EmotionService(Settings(), FixedBackend(models), {TEXT_MODEL: models[TEXT_MODEL]})
    for call in (emotions.speech(wav_bytes()), emotions.face(b"\xff\xd8\xff", detect=False)):
        with pytest.raises(ModelNotServed) as raised:
            await call
        assert raised.value.status == 503 and raised.value.code == "model_unavailable"


async def test_speech_runs_every_window_and_answers_their_mean(models):
    emotions, backend = service(models, top={SPEECH_MODEL: 4})
    answer = await emotions.speech(wav_bytes(seconds=7.0))
    assert answer["emotion"] == models[SPEECH_MODEL].labels[4] and answer["duration"] == pytest.approx(7.0, abs=0.1)
    assert len(answer["timeline"]) >= 3 and len(backend.calls) == 1  # every window in one batch


async def test_face_without_detection_classifies_the_whole_crop(models):
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 48), dtype=np.uint8)).save(buffer, format="PNG")
    emotions, backend = service(models, top={FACE_MODEL: 3})
    answer = await emotions.face(buffer.getvalue(), detect=False)
    assert answer["emotion"] == models[FACE_MODEL].labels[3] and answer["detected"] is False
    assert answer["faces"][0]["box"] == {"x": 0, "y": 0, "width": 48, "height": 48}
    assert backend.calls[0][0] == FACE_MODEL


def test_calibration_keeps_the_argmax_and_sharpens_or_softens():
    p = np.array([[0.7, 0.2, 0.1]], dtype=np.float32)
    softer, sharper = calibrate(p, 2.0), calibrate(p, 0.5)
    assert softer[0, 0] < 0.7 < sharper[0, 0] and np.allclose(softer.sum(), 1) and softer.argmax() == sharper.argmax() == 0
    assert calibrate(p, 1.0) is p


async def test_multimodal_fuses_and_names_the_field_that_failed(models):
    emotions, backend = service(models, top={TEXT_MODEL: 0})
    recommender = Recommender(Settings())
    multimodal = MultimodalRecommender(emotions, recommender, {"text": 1.0, "speech": 1.0, "face": 1.0})
    answer = await multimodal.recommend(MultimodalInput(text="what a day", audio=wav_bytes()), limit=3)
    assert set(answer["modalities"]) == {"text", "speech"} and len(answer["recommendations"]) == 3
    assert set(answer["fusion"]["weights"]) == {"text", "speech"}
    with pytest.raises(TooLarge) as raised:
        await multimodal.recommend(MultimodalInput(text="x" * 6000))
    assert raised.value.message.startswith("text:")
    with pytest.raises(InvalidInput) as raised:
        await multimodal.recommend(MultimodalInput(text="  "))
    assert raised.value.code == "nothing_to_recommend_from"
    backend.fail = {SPEECH_MODEL}
    with pytest.raises(ModelUnavailable) as raised:
        await multimodal.recommend(MultimodalInput(text="fine", audio=wav_bytes()))
    assert raised.value.message.startswith("audio:") and "test backend" not in raised.value.message  # detail stays internal
    await recommender.close()


async def test_concurrent_calls_share_one_service(models):
    emotions, backend = service(models)
    answers = await asyncio.gather(*(emotions.text([f"sentence {i}"]) for i in range(10)))
    assert all(len(a) == 1 for a in answers)
