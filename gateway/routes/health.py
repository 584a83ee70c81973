"""Liveness (the gateway process answers) and readiness (the backend is reachable and every model is ready), as
Kubernetes' probes expect them: a dead Triton makes the gateway unready, never dead."""

from __future__ import annotations

from fastapi import APIRouter

from gateway.deps import BackendDep, SettingsDep
from gateway.error_handlers import error_response, response_for
from gateway.errors import ModelUnavailable, Unavailable
from gateway.schemas import error_responses

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="the gateway process is up")
async def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz", summary="the inference backend is reachable and every model is ready", responses=error_responses(503))
async def readyz(backend: BackendDep, settings: SettingsDep):
    try:
        states = await backend.ready(settings.model_names)
    except ModelUnavailable as exc:
        return response_for(Unavailable("backend_unavailable", f"the inference backend ({settings.backend}) is unreachable", internal=exc.internal))
    if not all(states.values()):
        not_ready = [m for m, ok in states.items() if not ok]
        return error_response(503, "model_not_ready", f"not ready: {', '.join(not_ready)}", [{"models": states}])
    return {"status": "ready", "backend": settings.backend, "models": states}
