"""The page's files over HTTP from the real gateway (no browser): served, self-contained, shipped as package data."""

from __future__ import annotations

import re
import tomllib

from gateway.routes.page import FILES
from tests.conftest import ROOT


def test_index_and_assets_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assets = re.findall(r'(?:src|href)="(static/[^"]+)"', page.text)
    assert len(assets) == 2
    for asset in assets:
        answer = client.get("/" + asset)
        assert answer.status_code == 200, asset
    assert client.get("/static/app.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/static/style.css").headers["content-type"].startswith("text/css")


def test_nothing_outside_the_static_folder(client):
    for path in ("/static/missing.js", "/static/..%2Fapp.py", "/static/%2E%2E%2Fsettings.py"):
        answer = client.get(path)
        assert answer.status_code == 404, path
        assert answer.json()["error"]


def test_no_resource_from_another_host():
    """No CDN, font or script from elsewhere: deployments without internet get the whole page."""
    for path in FILES.values():
        text = path.read_text()
        external = re.findall(r"""(?:src|href)\s*=\s*["'](?:https?:)?//[^"']+|@import|url\(\s*["']?(?:https?:)?//""", text)
        assert external == [], f"{path.name}: {external}"


def test_ui_config_says_why_the_playlist_button_is_off(client):
    config = client.get("/ui/config").json()
    assert config["max_audio_seconds"] > 0 and config["max_recommendation_limit"] >= config["recommendation_limit"]
    assert config["playlist"]["enabled"] is False and "EMOTUNE_SPOTIFY_REFRESH_TOKEN" in config["playlist"]["message"]
    assert config["enrichment"]["enabled"] is False and "SPOTIPY_CLIENT_ID" in config["enrichment"]["message"]
    assert config["api_key_required"] is False
    assert {"text_emotion", "speech_emotion", "face_emotion"} <= set(config["models"])


def test_page_routes_stay_out_of_the_api_schema(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert not {"/", "/static/{name}", "/ui/config"} & set(paths)


def test_static_files_ship_as_package_data():
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["gateway"]
    assert "static/*" in package_data
    assert {"index.html", "app.js", "style.css"} <= set(FILES)
