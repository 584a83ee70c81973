"""``LocalBackend``: the same model repository run in process by ONNX Runtime, for hosts with no Triton binary.

A python-backend model of the repository with no ``model.onnx`` whose ``1/model.py`` offers ``local_model(folder,
run)`` (``face_pipeline``) runs that file's code here, calling the other models through ``run``."""

from __future__ import annotations

import asyncio
import importlib.util
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
        self.pipelines: dict = {}
        for name in models:
            path = Path(repository) / name / "1" / "model.onnx"
            if path.exists():
                self.sessions[name] = cpu_session(path, threads)
            elif (local := _local_model(Path(repository) / name)) is not None:
                self.pipelines[name] = local(Path(repository) / name, self._run)
        # One worker: ONNX Runtime already uses every core it was given; more would oversubscribe.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="onnxruntime")

    def _run(self, model: str, inputs: dict[str, np.ndarray], outputs: list[str]) -> list[np.ndarray]:
        session = self.sessions.get(model)
        if session is None:
            raise RuntimeError(f"model {model} is not loaded in the local backend")
        return session.run(outputs, inputs)

    async def infer(self, model: str, inputs: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
        if model in self.pipelines:
            with observe_inference(model, backend="local"):
                results = await asyncio.get_running_loop().run_in_executor(self._executor, self.pipelines[model], inputs, outputs)
            return dict(zip(outputs, results))
        session = self.sessions.get(model)
        if session is None:
            raise ModelUnavailable(model, f"model {model} is not loaded in the local backend")
        with observe_inference(model, backend="local"):
            results = await asyncio.get_running_loop().run_in_executor(self._executor, session.run, outputs, inputs)
        return dict(zip(outputs, results))

    async def ready(self, models: list[str]) -> dict[str, bool]:
        return {m: m in self.sessions or m in self.pipelines for m in models}

    async def close(self) -> None:
        self._executor.shutdown(wait=False)


def _local_model(folder: Path):
    path = folder / "1" / "model.py"
    if not path.exists():
        return None
    spec = importlib.util.spec_from_file_location(f"emotune_local_{folder.name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, "local_model", None)
