"""The model tester of the original design: the same HTTP requests, to a running gateway (``--url``) or to the
gateway app in process with the local ONNX Runtime backend, so every modality goes through one code path."""

from __future__ import annotations

import asyncio
import json
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

ENDPOINTS = {"text": "/text_emotion", "speech": "/speech_emotion", "face": "/facial_emotion"}


@asynccontextmanager
async def gateway_client(url: str | None):
    if url:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            yield client
        return
    from gateway.app import create_app
    from gateway.settings import get_settings

    app = create_app(get_settings().model_copy(update={"backend": "local"}))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://emotune", timeout=60) as client:
            yield client


async def predict_one(client: httpx.AsyncClient, modality: str, value: str) -> dict:
    if modality == "text":
        response = await client.post(ENDPOINTS["text"], json={"text": value}, params={"recommend": "false"})
    else:
        path = Path(value).expanduser()
        if not path.is_file():
            return {"error": "file_not_found", "message": f"no such file: {path}"}
        response = await client.post(ENDPOINTS[modality], files={"file": (path.name, path.read_bytes())}, params={"recommend": "false"})
    return response.json()


def show(result: dict) -> None:
    if "error" in result:
        print(f"error: {result['message']}")
        return
    print(f"emotion: {result['emotion']}  (confidence {result['confidence']:.2f})")
    for label, score in sorted(result["scores"].items(), key=lambda kv: -kv[1]):
        print(f"  {label:<10} {score:6.3f} {'#' * int(round(score * 30))}")
    extra = {k: v for k, v in result.items() if k not in ("emotion", "confidence", "scores", "recommendations")}
    if extra:
        print(json.dumps(extra, indent=2)[:2000])


async def _interactive(client: httpx.AsyncClient) -> None:
    choices = {"1": "text", "2": "speech", "3": "face"}
    while True:
        choice = input("\nModel: 1) text  2) speech  3) face  q) quit > ").strip().lower()
        if choice in ("q", "quit", "exit", ""):
            return
        modality = choices.get(choice) or (choice if choice in ENDPOINTS else None)
        if modality is None:
            print("choose 1, 2, 3 or q")
            continue
        value = input("Text > " if modality == "text" else "File path > ").strip()
        if value:
            show(await predict_one(client, modality, value))


def run_predict(args) -> None:
    async def main() -> None:
        async with gateway_client(args.url) as client:
            if args.modality and args.input:
                show(await predict_one(client, args.modality, args.input))
            else:
                await _interactive(client)

    asyncio.run(main())
