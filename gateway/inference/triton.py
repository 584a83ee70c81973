"""``TritonClient``: async gRPC to tritonserver over one reused channel, with a deadline on every call."""

from __future__ import annotations

import asyncio

import numpy as np
import tritonclient.grpc.aio as grpcclient
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from gateway.inference import ModelUnavailable
from gateway.metrics import current_request_id, observe_inference


class TritonClient:
    def __init__(self, url: str, timeout_s: float = 5.0):
        self.url, self.timeout_s = url, timeout_s
        self._client: grpcclient.InferenceServerClient | None = None

    @property
    def client(self) -> grpcclient.InferenceServerClient:
        # Created on first use, inside the running event loop that will own the channel.
        if self._client is None:
            self._client = grpcclient.InferenceServerClient(self.url)
        return self._client

    async def infer(self, model: str, inputs: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
        tensors = []
        for name, array in inputs.items():
            tensor = grpcclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
            tensor.set_data_from_numpy(array)
            tensors.append(tensor)
        requested = [grpcclient.InferRequestedOutput(name) for name in outputs]
        try:
            with observe_inference(model, backend="triton"):
                async with asyncio.timeout(self.timeout_s + 1.0):  # a backstop to gRPC's own deadline; unlike wait_for, no extra task
                    result = await self.client.infer(
                        model, tensors, outputs=requested, request_id=current_request_id() or "", client_timeout=self.timeout_s
                    )
        except (TimeoutError, InferenceServerException) as exc:
            raise ModelUnavailable(model, f"Triton at {self.url} could not run {model}: {_reason(exc)}") from exc
        return {name: result.as_numpy(name) for name in outputs}

    async def ready(self, models: list[str]) -> dict[str, bool]:
        try:
            async with asyncio.timeout(self.timeout_s):
                # Liveness, not readiness: Triton's strict readiness turns false when any model is down,
                # and we want to say which one.
                if not await self.client.is_server_live():
                    raise ModelUnavailable("Triton", f"Triton at {self.url} is not live")
                return {m: bool(await self.client.is_model_ready(m)) for m in models}
        except (InferenceServerException, TimeoutError) as exc:
            raise ModelUnavailable("Triton", f"Triton at {self.url} is unreachable: {_reason(exc)}") from exc

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None


def _reason(exc: Exception) -> str:
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return "deadline exceeded"
    text = exc.message() if isinstance(exc, InferenceServerException) else str(exc)
    return (text or type(exc).__name__).splitlines()[0][:300]
