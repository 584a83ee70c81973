"""The HTTP endpoints: /music_recommendation and /recommend on a small app that holds only the recommendation
router (no model needed), and the text path on the real gateway once the text model is exported."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from gateway.error_handlers import install_error_handlers
from gateway.model_info import load_models
from gateway.recommend.fusion import TO_COMMON
from gateway.recommend.service import Recommender
from gateway.routes import recommend as recommend_routes
from gateway.services.emotion import EmotionService
from gateway.services.multimodal import MultimodalRecommender
from gateway.settings import PROJECT_ROOT

TEXT_MODEL_DIR = PROJECT_ROOT / "model_repository" / "python" / "text_emotion"


def small_app(settings, recommender) -> FastAPI:
    """What gateway.app's lifespan puts on app.state, without loading models."""
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(recommend_routes.router)
    app.state.settings, app.state.models, app.state.backend, app.state.recommender = settings, {}, None, recommender
    app.state.emotions = EmotionService(settings, None, {})
    app.state.multimodal = MultimodalRecommender(app.state.emotions, recommender, settings.fusion_weights)
    return app


@pytest.fixture
async def client(make_settings, catalog, fake_spotify):
    settings = make_settings(fake_spotify)
    recommender = Recommender(settings, catalog=catalog)
    transport = httpx.ASGITransport(app=small_app(settings, recommender))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http
    await recommender.close()


async def test_music_recommendation_answers_like_the_original(client):
    response = await client.post("/music_recommendation", json={"emotion": "joy", "limit": 10})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["emotion"] == "joy" and len(body["recommendations"]) == 10
    track = body["recommendations"][0]
    assert {"name", "artist", "preview_url", "external_url", "image_url", "id", "uri", "features", "reason"} <= set(track)
    assert track["image_url"].startswith("https://i.scdn.co/image/")  # enriched by the fake Spotify
    assert body["enrichment"] == {"status": "ok"}


async def test_strategy_filters_and_no_enrichment(client):
    response = await client.post(
        "/music_recommendation",
        json={
            "emotion": "Sad",
            "limit": 8,
            "strategy": "uplift",
            "enrich": False,
            "max_per_artist": 1,
            "filters": {"year_min": 2019, "min_popularity": 65},
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["emotion"] == "sad" and body["mood"] == "sadness" and body["strategy"] == "uplift"
    assert all(t["year"] == 2019 and t["popularity"] >= 65 and t["image_url"] is None for t in body["recommendations"])
    assert body["enrichment"]["reason"] == "not_requested"


async def test_unknown_emotion_lists_the_valid_ones(client):
    response = await client.post("/music_recommendation", json={"emotion": "hangry"})
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "unknown_emotion" and "joy" in body["message"]
    assert {"joy", "sad", "nostalgic", "calm"} <= set(body["details"][0]["valid_emotions"])


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({"emotion": "joy", "limit": 0}, "invalid_limit"),
        ({"emotion": "joy", "limit": 51}, "invalid_limit"),
        ({"emotion": "joy", "filters": {"year_min": 2019, "year_max": 2017}}, "invalid_filters"),
        ({"emotion": "joy", "filters": {"min_popularity": 101}}, "invalid_request"),
        ({"emotion": "joy", "filters": {"genre": "rock"}}, "invalid_request"),
        ({"emotion": "joy", "strategy": "sideways"}, "invalid_request"),
        ({"emotion": ""}, "invalid_request"),
        ({"limit": 3}, "invalid_request"),
    ],
)
async def test_bad_requests_are_clear_4xx(client, payload, code):
    response = await client.post("/music_recommendation", json=payload)
    assert response.status_code == 422, response.text
    assert response.json()["error"] == code


async def test_invalid_json(client):
    response = await client.post("/music_recommendation", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 400 and response.json()["error"] == "invalid_json"


async def test_recommend_needs_some_input(client):
    response = await client.post("/recommend", data={"limit": "5"})
    assert response.status_code == 422 and response.json()["error"] == "nothing_to_recommend_from"
    response = await client.post("/recommend", json={"text": "hello"})
    assert response.status_code == 415


async def test_recommend_without_the_text_model_says_so(client):
    response = await client.post("/recommend", data={"text": "what a lovely day"})
    assert response.status_code == 503  # a model not served is a 503 on every route
    assert response.json()["error"] == "model_unavailable" and response.json()["message"].startswith("text:")


async def test_recommend_names_the_field_a_modality_failed_on(make_settings, catalog, fake_spotify):
    """The served models' metadata, no backend: bad files fail in preprocessing, before any inference."""
    settings = make_settings(fake_spotify)
    recommender = Recommender(settings, catalog=catalog)
    app = small_app(settings, recommender)
    models = load_models(TEXT_MODEL_DIR.parent, ["speech_emotion", "face_emotion", "face_pipeline"])
    app.state.emotions = EmotionService(settings, None, models)
    app.state.multimodal = MultimodalRecommender(app.state.emotions, recommender, settings.fusion_weights)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        response = await http.post("/recommend", files={"audio": ("a.wav", b"RIFF0000WAVE", "audio/wav")})
        assert response.status_code == 422 and response.json()["message"].startswith("audio:"), response.text
        response = await http.post("/recommend", files={"image": ("f.jpg", b"\xff\xd8\xff", "image/jpeg")})
        assert response.status_code == 415 and response.json()["message"].startswith("image:"), response.text
        response = await http.post("/recommend", data={"text": "a lovely day"})
        assert response.status_code == 503 and response.json()["message"].startswith("text:"), response.text
    await recommender.close()


async def test_playlist_request_without_user_oauth_still_recommends(client):
    response = await client.post("/music_recommendation", json={"emotion": "calm", "limit": 3, "playlist": "calm down"})
    assert response.status_code == 200
    assert response.json()["playlist"]["reason"] == "user_auth_not_configured"


needs_text_model = pytest.mark.skipif(not (TEXT_MODEL_DIR / "model.json").exists(), reason="model_repository/python/text_emotion not exported yet")


@pytest.fixture
def gateway(make_settings):
    from gateway.app import create_app

    settings = make_settings(None, backend="local", models=["text_emotion"], model_repository=TEXT_MODEL_DIR.parent)
    with TestClient(create_app(settings)) as http:
        yield http


@needs_text_model
def test_text_emotion_carries_recommendations_unless_turned_off(gateway):
    body = gateway.post("/text_emotion", json={"text": "i feel so happy and excited today"}).json()
    assert body["emotion"] in {"joy", "love", "surprise"} and len(body["recommendations"]) == 10
    assert body["enrichment"]["reason"] == "no_credentials"
    plain = gateway.post("/text_emotion", params={"recommend": "false"}, json={"text": "i feel so happy"}).json()
    assert "recommendations" not in plain
    batch = gateway.post("/text_emotion", json={"texts": ["i am furious", "i feel so alone"]}).json()
    assert all(len(r["recommendations"]) == 10 for r in batch["results"])


@needs_text_model
def test_recommend_from_text_fuses_and_recommends(gateway):
    response = gateway.post("/recommend", data={"text": "i feel so sad and lonely tonight", "limit": "6", "strategy": "uplift"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body["modalities"]) == {"text"}
    assert body["emotion"] == TO_COMMON[body["modalities"]["text"]["emotion"]]  # one modality: fusion keeps its answer
    assert body["fusion"]["weights"] == {"text": 1.0} and len(body["recommendations"]) == 6
    response = gateway.post("/recommend", data={"text": "hi"}, files={"audio": ("a.wav", b"RIFF....", "audio/wav")})
    assert response.status_code == 503 and response.json()["message"].startswith("audio:")  # speech is not served here
