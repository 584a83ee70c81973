"""The gateway's text batcher (gateway/services/text_batcher.py) over real backends: the in-process ONNX Runtime
backend, the session's tritonserver over gRPC, and a TCP peer that accepts and never answers (a hung Triton)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import socket
import time

import httpx
import numpy as np
import pytest
from prometheus_client import REGISTRY

from gateway.errors import ModelUnavailable
from gateway.inference.local import LocalBackend
from gateway.inference.triton import TritonClient
from gateway.model_info import ModelInfo
from gateway.preprocessing.text import load_tokenizer
from gateway.services.text_batcher import TextBatcher
from tests.conftest import REPOSITORY, start_gateway, stop_gateway

TEXT_DIR = REPOSITORY / "text_emotion"
pytestmark = pytest.mark.skipif(not (TEXT_DIR / "model.json").exists(), reason="text_emotion not exported")
TEXTS = [
    "I am feeling very happy today!",
    "i feel so lonely and miserable tonight",
    "i am furious that they lied to me again and again and again without any shame at all",
    "i am afraid something bad will happen",
    "i was amazed to see how big it was",
    "i feel a bit unsure about all this",
    "what a wonderful surprise",
    "i hate waiting",
]


def _batcher(backend, timeout_s: float = 5.0, max_in_flight: int = 1) -> TextBatcher:
    info = ModelInfo.load(TEXT_DIR)
    pre = info.preprocessing
    tokenizer = load_tokenizer(info.directory, pre["tokenizer"], pre["max_length"], pre.get("pad_to_multiple", 1))
    return TextBatcher(backend, info, tokenizer, timeout_s, max_in_flight=max_in_flight)


def _calls() -> float:
    return REGISTRY.get_sample_value("emotune_text_coalesced_requests_count") or 0.0


def test_concurrent_requests_share_calls_and_each_gets_its_own_rows():
    backend = LocalBackend(REPOSITORY, ["text_emotion"], threads=1)
    batcher = _batcher(backend)

    async def scenario():
        alone = [await batcher.probabilities([t]) for t in TEXTS]
        before = _calls()
        together = await asyncio.gather(*(batcher.probabilities([t]) for t in TEXTS), batcher.probabilities(TEXTS[:3]))
        return alone, together, _calls() - before

    alone, together, calls = asyncio.run(scenario())
    # one call in flight: the first request leaves alone, the other eight requests (ten rows) ride the next call
    assert calls == 2
    info = ModelInfo.load(TEXT_DIR)
    for a, b in zip(alone, together[: len(TEXTS)], strict=True):
        assert b.shape == (1, len(info.labels))
        assert np.argmax(a) == np.argmax(b) and np.allclose(a, b, atol=0.05)  # INT8: per-batch activation scales move them a little
    assert together[-1].shape == (3, len(info.labels))
    assert [int(np.argmax(r)) for r in together[-1]] == [int(np.argmax(a)) for a in alone[:3]]


def test_a_request_that_gives_up_leaves_alone_and_the_others_are_answered():
    backend = LocalBackend(REPOSITORY, ["text_emotion"], threads=1)
    batcher = _batcher(backend)

    async def scenario():
        tasks = [asyncio.create_task(batcher.probabilities([t])) for t in TEXTS]
        await asyncio.sleep(0)  # every request queued behind the first call
        tasks[3].cancel()
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = asyncio.run(scenario())
    assert isinstance(results[3], asyncio.CancelledError)
    assert all(isinstance(r, np.ndarray) and r.shape[0] == 1 for i, r in enumerate(results) if i != 3)


def test_triton_over_grpc_answers_each_request_with_its_own_rows(triton):
    client = TritonClient(triton.grpc_url, timeout_s=10)
    batcher = _batcher(client, max_in_flight=1)

    async def scenario():
        try:
            alone = [await batcher.probabilities([t]) for t in TEXTS]
            together = await asyncio.gather(*(batcher.probabilities([t]) for t in TEXTS))
            return alone, together
        finally:
            await client.close()

    alone, together = asyncio.run(scenario())
    assert [int(np.argmax(a)) for a in alone] == [int(np.argmax(b)) for b in together]


def test_a_hung_backend_gives_every_queued_request_a_503_at_its_deadline():
    with socket.socket() as hung:  # accepts connections (the kernel does), never speaks gRPC
        hung.bind(("127.0.0.1", 0))
        hung.listen(16)
        client = TritonClient(f"127.0.0.1:{hung.getsockname()[1]}", timeout_s=1.0)
        batcher = _batcher(client, timeout_s=1.0)

        async def scenario():
            try:
                return await asyncio.gather(*(batcher.probabilities([t]) for t in TEXTS), return_exceptions=True)
            finally:
                await client.close()

        started = time.monotonic()
        results = asyncio.run(scenario())
        elapsed = time.monotonic() - started
    assert all(isinstance(r, ModelUnavailable) and r.status == 503 for r in results), results
    assert elapsed < 4.0  # the deadline counts the queue: no request waits for the calls ahead of it to time out first


def test_gateway_with_coalescing_answers_concurrent_requests_like_single_ones(triton, tmp_path):
    """Through a real gateway with EMOTUNE_TEXT_COALESCE=true and Triton: the same answers alone and under concurrency,
    and a bad text in the burst is refused on its own. One call in flight, so requests that arrive while it runs must
    share the next one even on a loaded machine, where 16 client threads rarely keep the default 8 calls busy."""
    process, url = start_gateway(
        {
            "EMOTUNE_BACKEND": "triton",
            "EMOTUNE_TRITON_GRPC_PORT": str(triton.grpc_port),
            "EMOTUNE_TEXT_COALESCE": "true",
            "EMOTUNE_TEXT_COALESCE_IN_FLIGHT": "1",
            "EMOTUNE_MODEL_REPOSITORY": str(REPOSITORY),
            "EMOTUNE_MODELS": '["text_emotion"]',
        },
        tmp_path / "gw.log",
    )
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            alone = [client.post("/text_emotion", json={"text": t}).json() for t in TEXTS]
            bodies = [{"text": t} for t in TEXTS] * 4 + [{"text": "   "}]
            with concurrent.futures.ThreadPoolExecutor(16) as pool:
                responses = list(pool.map(lambda b: client.post("/text_emotion", json=b), bodies))
            coalesced = client.get("/metrics").text
    finally:
        stop_gateway(process)
    calls = next(float(line.split()[1]) for line in coalesced.splitlines() if line.startswith("emotune_text_coalesced_requests_count "))
    assert 0 < calls < len(TEXTS) + len(bodies) - 1  # some of the 40 answered requests shared a call
    assert [r.status_code for r in responses] == [200] * (len(bodies) - 1) + [422]
    assert responses[-1].json()["error"] == "empty_text"
    for i, r in enumerate(responses[:-1]):
        assert r.json()["emotion"] == alone[i % len(TEXTS)]["emotion"]


def test_in_process_backend_is_not_coalesced_so_each_text_gets_its_answer_alone():
    """EMOTUNE_BACKEND=local pads a call's rows together, which moves INT8 answers: each request stays its own call."""
    from gateway.model_info import load_models
    from gateway.services.emotion import EmotionService
    from gateway.settings import Settings

    settings = Settings(backend="local", text_coalesce=True, model_repository=REPOSITORY, models=["text_emotion"])
    backend = LocalBackend(REPOSITORY, ["text_emotion"], threads=1)
    service = EmotionService(settings, backend, load_models(REPOSITORY, ["text_emotion"]))

    async def scenario():
        alone = [await service.text([t]) for t in TEXTS]
        before = _calls()
        together = await asyncio.gather(*(service.text([t]) for t in TEXTS * 3))
        return alone, together, _calls() - before

    try:
        alone, together, coalesced = asyncio.run(scenario())
    finally:
        asyncio.run(backend.close())
    assert coalesced == 0
    assert together == alone * 3
