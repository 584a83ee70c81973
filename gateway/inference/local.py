"""``LocalBackend``: the same model repository run in process by ONNX Runtime, for hosts with no Triton binary."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort

from gateway.inference import ModelUnavailable
from gateway.inference.onnx_session import cpu_session
from gateway.metrics import observe_inference


class LocalBackend:
    def __init__(self, repository: Path, models: list[str], threads: int = 2):
        self.sessions: dict[str, ort.InferenceSession] = {}
        for name in models:
            path = Path(repository) / name / "1" / "model.onnx"
            if not path.exists():
                continue
            self.sessions[name] = cpu_session(path, threads)
        # One worker: ONNX Runtime already uses every core it was given; more would oversubscribe.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="onnxruntime")

    async def infer(self, model: str, inputs: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
        session = self.sessions.get(model)
        if session is None:
            raise ModelUnavailable(model, f"model {model} is not loaded in the local backend")
        with observe_inference(model, backend="local"):
            results = await asyncio.get_running_loop().run_in_executor(self._executor, session.run, outputs, inputs)
        return dict(zip(outputs, results))

    async def ready(self, models: list[str]) -> dict[str, bool]:
        return {m: m in self.sessions for m in models}

    async def close(self) -> None:
        self._executor.shutdown(wait=False)
