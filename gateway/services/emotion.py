"""``EmotionService``: each modality's whole way from the client's input to the answer.

validate → preprocess (``gateway.preprocessing``, the modules training used) → ``backend.infer`` (Triton or in
process) → calibrate → labels. Built once in the app's lifespan; the routes, ``/recommend`` and the CLI call it.
CPU-heavy preprocessing (audio decoding and features, image decoding and face crops) runs in a worker thread so the
event loop keeps serving.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from starlette.concurrency import run_in_threadpool

from gateway.errors import InvalidInput, ModelNotServed, TooLarge, Unavailable
from gateway.inference import InferenceBackend
from gateway.model_info import ModelInfo
from gateway.postprocessing import calibrate, clip_answer, to_emotion
from gateway.preprocessing.audio import (
    FeatureStats,
    SpeechFeatureConfig,
    SpeechInput,
    prepare_speech,
    prepare_speech_samples,
    warm_up,
    window_samples,
)
from gateway.preprocessing.text import TextTokenizer, load_tokenizer
from gateway.services.face import face_emotion
from gateway.services.text_batcher import TextBatcher
from gateway.settings import Settings

TEXT_MODEL, SPEECH_MODEL = "text_emotion", "speech_emotion"


def validate_texts(texts: list[str], max_chars: int, max_batch: int) -> None:
    """Every JSON string is answered or refused with a 4xx: empty, too long, or not encodable (a lone surrogate)."""
    if not texts:
        raise InvalidInput("empty_batch", "'texts' must hold at least one text")
    if len(texts) > max_batch:
        raise TooLarge("batch_too_large", f"at most {max_batch} texts per request, got {len(texts)}")
    for i, text in enumerate(texts):
        where = "text" if len(texts) == 1 else f"texts[{i}]"
        if len(text) > max_chars:
            raise TooLarge("text_too_long", f"{where} has {len(text)} characters; the limit is {max_chars}")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidInput(
                "invalid_text", f"{where} holds a lone surrogate (U+{ord(text[exc.start]):04X}) at position {exc.start}; send valid Unicode"
            ) from None
        if not text.strip() or not any(c.isprintable() and not c.isspace() for c in text):
            raise InvalidInput("empty_text", f"{where} is empty, whitespace or control characters only")


@dataclass(frozen=True)
class SpeechPreprocessing:
    """What the gateway does to a clip before the speech model: decode and trim, then either cut the samples into
    windows (a graph that computes the log-mel itself: ``preprocessing.input == "audio"``) or compute the features."""

    config: SpeechFeatureConfig
    stats: FeatureStats
    input_name: str

    @classmethod
    def of(cls, info: ModelInfo) -> SpeechPreprocessing:
        pre = info.preprocessing
        config = SpeechFeatureConfig.from_dict(dict(pre["features"]))
        stats = FeatureStats.from_json(info.directory / pre["feature_stats"])
        input_name = pre.get("input", "features")
        expected = (input_name, [window_samples(config)] if input_name == "audio" else [-1, config.dim])
        if (info.inputs[0].name, list(info.inputs[0].dims)) != expected or stats.mean.shape[0] != config.dim:
            raise Unavailable("model_misconfigured", f"{info.name}: its feature settings do not match its input")
        return cls(config, stats, input_name)

    def prepare(self, data: bytes, max_seconds: float = 60.0, max_bytes: int | None = None) -> SpeechInput:
        if self.input_name == "audio":
            return prepare_speech_samples(data, self.config, max_seconds, max_bytes)
        return prepare_speech(data, self.config, self.stats, max_seconds, max_bytes)


class EmotionService:
    """Text, speech and face emotion over one inference backend and the served models' metadata."""

    def __init__(self, settings: Settings, backend: InferenceBackend, models: dict[str, ModelInfo]):
        self.settings, self.backend, self.models = settings, backend, models

    def model(self, name: str) -> ModelInfo:
        info = self.models.get(name)
        if info is None:
            raise ModelNotServed(name)
        return info

    # --- text -----------------------------------------------------------------------------------------------------

    @cached_property
    def _tokenizer(self) -> TextTokenizer:
        info = self.model(TEXT_MODEL)
        pre = info.preprocessing
        return load_tokenizer(info.directory, pre["tokenizer"], pre["max_length"], pre.get("pad_to_multiple", 1))

    @cached_property
    def _text_batcher(self) -> TextBatcher:
        s = self.settings
        return TextBatcher(
            self.backend, self.model(TEXT_MODEL), self._tokenizer, s.triton_timeout_s, s.text_coalesce_in_flight, s.text_coalesce_max_tokens
        )

    async def _text_chunk(self, info: ModelInfo, texts: list[str]) -> np.ndarray:
        if self.settings.text_coalesce and self.settings.backend == "triton":
            return await self._text_batcher.probabilities(texts)
        return (await self.backend.infer(info.name, self._tokenizer.encode(texts), info.output_names))[info.output_names[0]]

    async def text(self, texts: list[str], max_batch: int | None = None) -> list[dict]:
        """Emotion of each text. Texts are sorted by length and sent in chunks of the model's max batch size; with
        ``text_coalesce`` (on by default, Triton backend only) chunks of concurrent requests share calls (``TextBatcher``)."""
        validate_texts(texts, self.settings.max_text_chars, max_batch or self.settings.max_batch_texts)
        info = self.model(TEXT_MODEL)
        if len(texts) == 1:
            probabilities = await self._text_chunk(info, texts)
        else:
            order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
            chunks = [order[i : i + info.max_batch_size] for i in range(0, len(order), info.max_batch_size)]
            outputs = await asyncio.gather(*(self._text_chunk(info, [texts[i] for i in chunk]) for chunk in chunks))
            probabilities = np.empty((len(texts), len(info.labels)), dtype=np.float32)
            for chunk, out in zip(chunks, outputs, strict=True):
                probabilities[chunk] = out
        return [to_emotion(row, info.labels) for row in calibrate(probabilities, info.temperature)]

    # --- speech ---------------------------------------------------------------------------------------------------

    @cached_property
    def _speech_preprocessing(self) -> SpeechPreprocessing:
        return SpeechPreprocessing.of(self.model(SPEECH_MODEL))

    def warm_up(self) -> None:
        """Run the audio path once at start-up so the first request does not pay for librosa's lazy set-up."""
        if SPEECH_MODEL in self.models:
            warm_up(self._speech_preprocessing.config)

    async def speech(self, data: bytes) -> dict:
        """An audio file → the clip's emotion (mean of its 3-s windows) and, for longer clips, a per-window timeline."""
        info = self.model(SPEECH_MODEL)
        pre = self._speech_preprocessing
        speech: SpeechInput = await run_in_threadpool(pre.prepare, data, self.settings.max_audio_seconds, self.settings.max_upload_bytes)
        arrays = {pre.input_name: speech.windows.astype(np.float32, copy=False), "lengths": speech.lengths}  # by input name
        outputs = []
        for start in range(0, len(speech.windows), info.max_batch_size):
            batch = {t.name: np.ascontiguousarray(arrays[t.name][start : start + info.max_batch_size]) for t in info.inputs}
            outputs.append((await self.backend.infer(info.name, batch, info.output_names))[info.output_names[0]])
        raw = np.concatenate(outputs)
        probabilities = calibrate(raw, info.temperature)
        answer = to_emotion(clip_answer(raw, info.temperature, info.calibration_level, info.window_exponent), info.labels)
        answer["duration"] = round(speech.audio.duration_s, 3)
        if len(probabilities) > 1:
            answer["timeline"] = [
                {"start": s, "end": e, **to_emotion(row, info.labels)} for s, e, row in zip(speech.starts_s, speech.ends_s, probabilities)
            ]
        return answer

    # --- face -----------------------------------------------------------------------------------------------------

    async def face(self, data: bytes, detect: bool = True) -> dict:
        """A photo → every face's emotion with its box, largest first; the top level is the largest face's.
        ``detect=False``: the image is already an aligned face crop (``gateway.services.face``)."""
        return await face_emotion(self, data, detect)
