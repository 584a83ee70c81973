"""``TextBatcher``: concurrent ``/text_emotion`` requests share inference calls.

Each call to the backend costs the gateway a gRPC round trip and tritonserver a request through its python stub,
whatever its size. So, as Hugging Face
text-embeddings-inference batches in its router, texts that arrive while ``max_in_flight`` calls are running wait
in a queue and leave together with the next call: whole requests in arrival order, up to the model's max batch
size in rows and ``max_tokens`` real tokens. A request that finds a free slot leaves at once: no waiting on an
idle service. Triton's dynamic batcher still batches across gateway replicas, and the served model runs each row
alone at its own length (``length_input``), so rows of mixed lengths share a call without paying for padding and each
gets the answer it gets alone.

What a client relies on stays per request: each request has its own future (its rows come back to it alone); a
request that gives up (client gone, task cancelled) leaves the queue without touching the others; the deadline
(``EMOTUNE_TRITON_TIMEOUT_S``) counts from when the request arrived, queue included, and past it the request gets
``ModelUnavailable`` (503). A failed call fails the requests it carried, as a failed Triton batch does.
The backend's own metrics count calls; ``emotune_text_coalesced_requests`` says how many requests each carried.

On by default with the Triton backend (``EMOTUNE_TEXT_COALESCE``; 8 calls in flight of at most 120 real tokens each):
measured interleaved on a quiet machine at concurrency 32 (``python -m bench.gateway_ab``), 1.075–1.096× the
requests/s of each request its own call, gateway CPU 1.11 → 0.89 ms and tritonserver 4.17 → 4.01 ms per request.
Small calls matter: the model runs each row alone, so a call of many rows holds one Triton instance while the other
waits (2 calls in flight of any size: 0.983× with p99 163 ms, same run), and Triton's CPU flavour forms batches of 4
rows for the same reason (export/text.py). In process (``EMOTUNE_BACKEND=local``) each
request stays its own call: rows padded together there would not get the answers they get alone.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections import deque
from dataclasses import dataclass

import numpy as np
from prometheus_client import Histogram

from gateway.errors import ModelUnavailable
from gateway.inference import InferenceBackend
from gateway.model_info import ModelInfo
from gateway.preprocessing.text import TextTokenizer

COALESCED = Histogram(
    "emotune_text_coalesced_requests", "Requests carried by one text inference call of the gateway's batcher", buckets=(1, 2, 4, 8, 16, 32, 64)
)


@dataclass
class _Pending:
    rows: list[list[int]]  # token ids, one list per text
    tokens: int
    future: asyncio.Future
    context: contextvars.Context  # the request's context: a call runs in its first request's (Triton logs that request id)


class TextBatcher:
    def __init__(
        self,
        backend: InferenceBackend,
        model: ModelInfo,
        tokenizer: TextTokenizer,
        timeout_s: float,
        max_in_flight: int = 2,
        max_tokens: int | None = None,  # None: max batch × max length
    ):
        self.backend, self.model, self.tokenizer, self.timeout_s = backend, model, tokenizer, timeout_s
        self.max_in_flight, self.max_rows = max_in_flight, model.max_batch_size
        self.max_tokens = max_tokens or self.max_rows * tokenizer.max_length
        self._queue: deque[_Pending] = deque()
        self._in_flight = 0
        self._calls: set[asyncio.Task] = set()

    async def probabilities(self, texts: list[str]) -> np.ndarray:
        """The model's output row for each text (at most the model's max batch size of them), in order."""
        if len(texts) > self.max_rows:
            raise ValueError(f"at most {self.max_rows} texts per batcher call, got {len(texts)}")
        rows = self.tokenizer.ids(texts)
        pending = _Pending(rows, sum(map(len, rows)), asyncio.get_running_loop().create_future(), contextvars.copy_context())
        self._queue.append(pending)
        self._dispatch()
        try:
            async with asyncio.timeout(self.timeout_s):
                return await pending.future
        except TimeoutError:
            raise ModelUnavailable(self.model.name, f"{self.model.name}: no answer within {self.timeout_s} s (queue and call)") from None
        finally:
            pending.future.cancel()  # a no-op once answered; if the request gave up, the dispatcher skips it

    def _dispatch(self) -> None:
        while self._in_flight < self.max_in_flight and (batch := self._take()):
            self._in_flight += 1
            call = asyncio.get_running_loop().create_task(self._call(batch), context=batch[0].context)
            self._calls.add(call)
            call.add_done_callback(self._calls.discard)

    def _take(self) -> list[_Pending]:
        """Whole requests from the front of the queue, while they fit the row and token budgets (the first always fits)."""
        batch, rows, tokens = [], 0, 0
        while self._queue:
            head = self._queue[0]
            if head.future.done():  # gave up while queued
                self._queue.popleft()
                continue
            if batch and (rows + len(head.rows) > self.max_rows or tokens + head.tokens > self.max_tokens):
                break
            batch.append(self._queue.popleft())
            rows, tokens = rows + len(head.rows), tokens + head.tokens
        return batch

    async def _call(self, batch: list[_Pending]) -> None:
        try:
            feeds = self.tokenizer.pad([row for p in batch for row in p.rows])
            COALESCED.observe(len(batch))
            outputs = await self.backend.infer(self.model.name, feeds, self.model.output_names)
        except Exception as exc:  # noqa: BLE001  (every request the call carried gets the failure)
            for p in batch:
                if not p.future.done():
                    p.future.set_exception(exc)
        else:
            probabilities, start = outputs[self.model.output_names[0]], 0
            for p in batch:
                if not p.future.done():
                    p.future.set_result(probabilities[start : start + len(p.rows)])
                start += len(p.rows)
        finally:
            self._in_flight -= 1
            self._dispatch()
