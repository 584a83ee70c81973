"""/text_emotion through the real gateway process and the real tritonserver over gRPC."""

from __future__ import annotations

import concurrent.futures

import httpx
import pytest

HAPPY = "I am feeling very happy today!"


def test_original_request_answers_joy(client: httpx.Client):
    r = client.post("/text_emotion", json={"text": HAPPY})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["emotion"] == "joy"
    assert set(body["scores"]) == {"joy", "sadness", "anger", "fear", "surprise"}
    assert abs(sum(body["scores"].values()) - 1) < 1e-3
    assert body["confidence"] == max(body["scores"].values())


def test_batch_keeps_order(client: httpx.Client):
    texts = ["i feel so angry and furious at them", HAPPY, "i am scared and terrified of the dark"]
    r = client.post("/text_emotion", json={"texts": texts})
    assert r.status_code == 200, r.text
    assert [x["emotion"] for x in r.json()["results"]] == ["anger", "joy", "fear"]


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"json": {"text": ""}}, 422, "empty_text"),
        ({"json": {"text": "   \n\t"}}, 422, "empty_text"),
        ({"json": {"text": 42}}, 422, "invalid_request"),
        ({"json": {"text": ["a"]}}, 422, "invalid_request"),
        ({"json": {}}, 422, "invalid_request"),
        ({"json": {"txt": "hello"}}, 422, "invalid_request"),
        ({"json": {"text": "a", "texts": ["b"]}}, 422, "invalid_request"),
        ({"json": {"texts": []}}, 422, "empty_batch"),
        ({"json": {"texts": ["ok", ""]}}, 422, "empty_text"),
        ({"json": {"text": "x" * 5001}}, 413, "text_too_long"),
        ({"json": {"texts": ["hi"] * 65}}, 413, "batch_too_large"),
        ({"content": b'{"text": "unclosed', "headers": {"content-type": "application/json"}}, 400, "invalid_json"),
        ({"content": b"I am happy", "headers": {"content-type": "text/plain"}}, 415, "unsupported_media_type"),
        ({"data": {"text": "I am happy"}}, 415, "unsupported_media_type"),
    ],
)
def test_bad_input_is_a_clear_4xx(client: httpx.Client, kwargs, status, code):
    r = client.post("/text_emotion", **kwargs)
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error"] == code
    assert body["message"]


def test_health_and_readiness(client: httpx.Client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["models"]["text_emotion"] is True


def test_openapi_lists_the_endpoints(client: httpx.Client):
    paths = client.get("/openapi.json").json()["paths"]
    assert "/text_emotion" in paths
    assert client.get("/docs").status_code == 200


def test_dynamic_batching_really_batches(client: httpx.Client, triton):
    """Under concurrent requests Triton executes batches larger than one (its own statistics say so)."""
    texts = [f"i feel {w} today" for w in ["happy", "sad", "angry", "scared", "surprised", "glad", "down", "calm"]] * 6
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(lambda t: client.post("/text_emotion", json={"text": t}).status_code, texts))
    assert statuses == [200] * len(texts)
    stats = httpx.get(f"{triton.http_url}/v2/models/text_emotion/stats").json()["model_stats"][0]
    sizes = {b["batch_size"] for b in stats["batch_stats"]}
    assert max(sizes) > 1, stats["batch_stats"]
    assert int(stats["execution_count"]) < int(stats["inference_count"])


def test_same_text_gets_the_same_answer_whatever_shares_its_batch(client: httpx.Client):
    """The INT8 graph's activation scales span the rows run together; the backend runs each row alone, so a sentence's
    scores do not move with the other requests Triton batches it with, nor with a batch of other texts (issue 22)."""
    sentence = "i feel a little nervous about tomorrow but mostly excited"
    others = [f"{w} and the weather is grey" for w in ("i am so angry at everyone", "what a lovely surprise", "i miss them")] * 8
    alone = client.post("/text_emotion?recommend=false", json={"text": sentence}).json()["scores"]
    in_batch = client.post("/text_emotion?recommend=false", json={"texts": [*others, sentence]}).json()["results"][-1]["scores"]
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        futures = [pool.submit(client.post, "/text_emotion?recommend=false", json={"text": t}) for t in [*others, sentence] * 2]
        concurrent_answers = [f.result().json()["scores"] for f in futures[len(others) :: len(others) + 1]]
    assert in_batch == alone
    assert all(answer == alone for answer in concurrent_answers)
