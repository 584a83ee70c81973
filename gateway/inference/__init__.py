"""The small interface every inference backend implements: ``infer(model, inputs) → outputs`` and ``ready()``.

Two implementations: ``TritonClient`` (async gRPC to tritonserver) and ``LocalBackend`` (ONNX Runtime in process,
over the same model repository).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from gateway.errors import ModelUnavailable

__all__ = ["InferenceBackend", "ModelUnavailable", "make_backend"]


class InferenceBackend(Protocol):
    async def infer(self, model: str, inputs: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
        """Run ``model`` on a batch; every input has the batch as its first axis (Triton gets the request id from the request context)."""

    async def ready(self, models: list[str]) -> dict[str, bool]:
        """Readiness of each model; raises ``ModelUnavailable`` when the backend cannot be reached."""

    async def close(self) -> None: ...


def make_backend(settings) -> InferenceBackend:
    if settings.backend == "local":
        from gateway.inference.local import LocalBackend

        return LocalBackend(settings.model_repository, settings.model_names, threads=settings.local_threads)
    from gateway.inference.triton import TritonClient

    return TritonClient(settings.triton_grpc_url, timeout_s=settings.triton_timeout_s)
