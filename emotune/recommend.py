"""``emotune recommend``: music for an emotion (``--emotion joy``) or for a text (``--text "..."``), in the terminal.

A text is classified in process (ONNX Runtime over the model repository, ``backend="local"``), so no server needs
to run. Spotify enrichment happens when SPOTIPY_CLIENT_ID/SECRET are set, exactly as in the gateway.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from gateway.errors import EmotuneError
from gateway.settings import get_settings


async def _emotion_of(text: str, settings) -> dict:
    from gateway.inference import make_backend
    from gateway.model_info import load_models
    from gateway.services.emotion import TEXT_MODEL, EmotionService

    models = load_models(settings.model_repository, [TEXT_MODEL])
    backend = make_backend(settings)
    try:
        return (await EmotionService(settings, backend, models).text([text], max_batch=1))[0]
    finally:
        await backend.close()


async def _run(args: argparse.Namespace) -> dict:
    from gateway.recommend.service import Recommender

    settings = get_settings()
    detected = None
    if args.text:
        detected = await _emotion_of(args.text, settings.model_copy(update={"backend": "local"}))
    recommender = Recommender(settings)
    try:
        body = await recommender.recommend(detected["emotion"] if detected else args.emotion, limit=args.limit, strategy=args.strategy)
    finally:
        await recommender.close()
    if detected:
        body["detected"] = detected
    return body


def _print(body: dict) -> None:
    detected = body.get("detected")
    if detected:
        print(f"text emotion: {detected['emotion']} ({detected['confidence']:.0%})")
    print(f"music for {body['mood']} ({body['strategy']}):")
    for n, track in enumerate(body["recommendations"], 1):
        f = track["features"]
        print(
            f"{n:>3}. {track['artist']} — {track['name']}  [valence {f['valence']:.2f}, energy {f['energy']:.2f}, "
            f"{f['tempo']:.0f} BPM]  {track['external_url']}"
        )
        print(f"     {track['reason']}")
    enrichment = body["enrichment"]
    if enrichment["status"] != "ok":
        print(f"(Spotify: {enrichment['message']})")


def run_recommend(args: argparse.Namespace) -> None:
    if bool(args.emotion) == bool(args.text):
        sys.exit("emotune recommend: give exactly one of --emotion or --text")
    try:
        body = asyncio.run(_run(args))
    except EmotuneError as exc:
        sys.exit(f"emotune recommend: {exc.message}")
    except FileNotFoundError as exc:  # no exported text model
        sys.exit(f"emotune recommend: {exc}")
    _print(body)
