"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter

from gateway.deps import BackendDep, SettingsDep
from gateway.errors import error_response
from gateway.inference import ModelUnavailable

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="the gateway process is up")
async def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz", summary="the inference backend is reachable and every model is ready")
async def readyz(backend: BackendDep, settings: SettingsDep):
    try:
        states = await backend.ready(settings.model_names)
    except ModelUnavailable as exc:
        return error_response(503, "backend_unavailable", str(exc))
    if not all(states.values()):
        not_ready = [m for m, ok in states.items() if not ok]
        return error_response(503, "model_not_ready", f"not ready: {', '.join(not_ready)}", [{"models": states}])
    return {"status": "ready", "backend": settings.backend, "models": states}
