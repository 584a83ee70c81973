"""What the gateway's own Python costs per ``/text_emotion`` request, against FastAPI's floor, with no sockets.

Each variant is an ASGI app called in process with real sentences (one per request, ``recommend=false``), so the
figure is CPU time per request without HTTP parsing, the event loop's I/O or the gRPC call, and it does not drift
with the machine the way a load test does:

- FastAPI alone: one route with the same body model and query switch, answering fixed bytes.
- the gateway (``create_app``) whose backend answers at once (``InstantBackend``: the right shape, uniform
  probabilities), with and without its middlewares (metrics and request ids, CORS, access control, body caps).

Under load, ``bench.gateway_load`` measures the whole gateway process per request (sockets, event loop and the gRPC
round trip included); the difference to the second row is what HTTP and gRPC cost there. It runs this step after
its sweep.

    python -m bench.gateway_floor [--quick] [--out bench/report]
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from contextlib import AsyncExitStack
from pathlib import Path

import numpy as np
import orjson
from fastapi import FastAPI, Response

from bench.common import REPOSITORY, machine, real_texts, step_parser, write_json
from gateway.schemas import TextEmotionRequest

MIDDLEWARES = ("RequestObservabilityMiddleware", "CORSMiddleware", "AccessControl", "BodyLimit")


class InstantBackend:
    """Answers every call at once with uniform probabilities: the gateway's work without the model's."""

    async def infer(self, model: str, inputs: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
        rows = next(iter(inputs.values())).shape[0]
        return {outputs[0]: np.full((rows, 5), 0.2, dtype=np.float32)}

    async def ready(self, models: list[str]) -> dict[str, bool]:
        return dict.fromkeys(models, True)

    async def close(self) -> None:
        return None


def fastapi_alone():
    app = FastAPI()
    answer = orjson.dumps({"emotion": "joy", "confidence": 0.2, "scores": dict.fromkeys(["sadness", "joy", "love", "anger", "fear"], 0.2)})

    @app.post("/text_emotion")
    async def text_emotion(body: TextEmotionRequest, recommend: bool = True):
        return Response(answer, media_type="application/json")

    return app


async def call(app, body: bytes) -> int:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/text_emotion",
        "raw_path": b"/text_emotion",
        "root_path": "",
        "query_string": b"recommend=false",
        "headers": [(b"host", b"bench"), (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    status = []

    async def receive():
        if messages:
            return messages.pop()
        await asyncio.Event().wait()  # no disconnect: the response is complete before anyone asks

    async def send(message):
        if message["type"] == "http.response.start":
            status.append(message["status"])

    await app(scope, receive, send)
    return status[0]


class Lifespan:
    """The app's lifespan run as a server runs it: start-up on enter, shut-down on exit (the app restores what its start-up
    changed in the process, such as BLAS thread limits)."""

    def __init__(self, app):
        self.app, self.inbox, self.outbox = app, asyncio.Queue(), asyncio.Queue()

    async def __aenter__(self):
        await self.inbox.put({"type": "lifespan.startup"})
        self.task = asyncio.create_task(self.app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, self.inbox.get, self.outbox.put))
        message = await self.outbox.get()
        if message["type"] != "lifespan.startup.complete":
            raise RuntimeError(f"gateway start-up failed: {message}")
        return self.app

    async def __aexit__(self, *exc):
        await self.inbox.put({"type": "lifespan.shutdown"})
        await self.outbox.get()
        await self.task


def gateway_app(without_middlewares: bool):
    from gateway.app import create_app
    from gateway.settings import Settings

    app = create_app(Settings(backend="triton", model_repository=REPOSITORY, models=["text_emotion"]))
    if without_middlewares:
        app.user_middleware = [m for m in app.user_middleware if m.cls.__name__ not in MIDDLEWARES]
    return app


async def measure(quick: bool) -> dict:
    bodies = [orjson.dumps({"text": t}) for t in real_texts(200 if quick else 1000)]
    n, reps = (300, 1) if quick else (5000, 3)
    rows = []
    async with AsyncExitStack() as stack:
        apps = {"FastAPI alone (same body model, fixed answer)": fastapi_alone()}
        for label, bare in (("the gateway, backend answering at once", False), ("the same without its middlewares", True)):
            app = await stack.enter_async_context(Lifespan(gateway_app(bare)))
            app.state.emotions.backend = InstantBackend()
            apps[label] = app
        for label, app in apps.items():
            for body in bodies[:200]:
                if (status := await call(app, body)) != 200:
                    raise RuntimeError(f"{label}: status {status}")
            per_rep = []
            for _ in range(reps):
                start = time.process_time()
                for i in range(n):
                    await call(app, bodies[i % len(bodies)])
                per_rep.append(1000 * (time.process_time() - start) / n)
            rows.append({"variant": label, "cpu_ms_per_request": round(statistics.median(per_rep), 4), "repetitions": [round(x, 4) for x in per_rep]})
            print(f"[floor] {label}: {rows[-1]['cpu_ms_per_request']} CPU ms per request", flush=True)
    return {"requests_per_repetition": n, "rows": rows}


def run(quick: bool, out: Path) -> dict:
    started_at = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    result = {"started": started_at, **asyncio.run(measure(quick)), "machine": machine()}
    load = out / "gateway.json"
    if load.exists():  # the last gateway sweep, for the difference the docstring names
        points = json.loads(load.read_text())["service"]["points"]
        text = [p for p in points if p.get("target") == "gateway /text_emotion" and p.get("concurrency") == 32]
        if text:
            result["under_load_gateway_cpu_ms_at_32"] = text[0]["cpu_ms_per_request"]["gateway"]
    write_json(out / "gateway_floor.json", result)
    return result


def main(argv: list[str] | None = None) -> None:
    args = step_parser(__doc__).parse_args(argv)
    run(args.quick, args.out)


if __name__ == "__main__":
    main()
