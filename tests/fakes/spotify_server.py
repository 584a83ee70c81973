"""A fake Spotify Web API on a loopback port, so spotipy is tested over real HTTP and nothing calls Spotify.

It serves the token endpoint (client credentials and refresh token) and the endpoints emotune uses:
``GET /v1/tracks/{id}``, ``GET /v1/me``, ``POST /v1/me/playlists``, ``POST /v1/playlists/{id}/items``.
``behaviour`` switches how the API answers: ``ok``, ``401``, ``403``, ``429`` (with ``Retry-After``), ``500``/``503``
or ``slow`` (answers after ``delay_s``); ``token_behaviour`` does the same for the token endpoint
(``ok`` or ``401``). ``latency_s`` delays every API answer; ``max_in_flight`` is the most API requests it has
served at once. Every request is recorded in ``requests``.

    with FakeSpotify() as fake:
        settings = Settings(spotify_api_prefix=fake.api_prefix, spotify_token_url=fake.token_url, ...)
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


class FakeSpotify:
    def __init__(self, behaviour: str = "ok", retry_after: int = 7, delay_s: float = 2.0):
        self.behaviour = behaviour
        self.token_behaviour = "ok"
        self.retry_after = retry_after
        self.delay_s = delay_s
        self.latency_s = 0.0
        self.in_flight = 0
        self.max_in_flight = 0
        self.unknown_ids: set[str] = set()
        self.requests: list[dict] = []
        self.playlists: dict[str, dict] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="fake-spotify", daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def api_prefix(self) -> str:
        return f"{self.base_url}/v1/"

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/api/token"

    def api_calls(self, method: str | None = None, prefix: str = "/v1/") -> list[dict]:
        with self._lock:
            return [r for r in self.requests if r["path"].startswith(prefix) and (method is None or r["method"] == method)]

    def start(self) -> FakeSpotify:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes "slow" handlers
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeSpotify:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- answers -------------------------------------------------------------------------------------------------

    def track(self, track_id: str) -> dict:
        return {
            "id": track_id,
            "name": f"Track {track_id}",
            "uri": f"spotify:track:{track_id}",
            "duration_ms": 200_000,
            "preview_url": f"https://p.scdn.co/mp3-preview/{track_id}",
            "external_urls": {"spotify": f"https://open.spotify.com/track/{track_id}"},
            "album": {
                "name": f"Album of {track_id}",
                "images": [
                    {"url": f"https://i.scdn.co/image/{track_id}-640", "width": 640, "height": 640},
                    {"url": f"https://i.scdn.co/image/{track_id}-64", "width": 64, "height": 64},
                ],
            },
        }


def _handler_for(fake: FakeSpotify):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # quiet
            pass

        def _send(self, status: int, body: dict | None = None, headers: dict | None = None) -> None:
            data = json.dumps(body if body is not None else {}).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, str(v))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout tests)
                pass

        def _body(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _record(self, body: bytes) -> None:
            with fake._lock:
                fake.requests.append(
                    {
                        "method": self.command,
                        "path": urlparse(self.path).path,
                        "auth": self.headers.get("Authorization"),
                        "body": body.decode(errors="replace"),
                    }
                )

        def _api_failure(self) -> bool:
            """Answer per ``fake.behaviour``; True when the request has been answered."""
            b = fake.behaviour
            if b == "slow":
                fake._stopping.wait(fake.delay_s)
                return False
            if b == "401":
                self._send(401, {"error": {"status": 401, "message": "The access token expired"}})
            elif b == "403":
                self._send(403, {"error": {"status": 403, "message": "Forbidden"}})
            elif b == "429":
                self._send(429, {"error": {"status": 429, "message": "API rate limit exceeded"}}, {"Retry-After": fake.retry_after})
            elif b in ("500", "502", "503"):
                self._send(int(b), {"error": {"status": int(b), "message": "Service unavailable"}})
            else:
                return False
            return True

        def do_POST(self) -> None:  # noqa: N802
            body = self._body()
            self._record(body)
            path = urlparse(self.path).path
            if path == "/api/token":
                form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
                if fake.token_behaviour == "401" or not self.headers.get("Authorization", "").startswith("Basic "):
                    self._send(401, {"error": "invalid_client", "error_description": "Invalid client"})
                elif form.get("grant_type") == "client_credentials":
                    self._send(200, {"access_token": "app-token", "token_type": "Bearer", "expires_in": 3600})
                elif form.get("grant_type") == "refresh_token" and form.get("refresh_token"):
                    self._send(
                        200,
                        {
                            "access_token": "user-token",
                            "token_type": "Bearer",
                            "expires_in": 3600,
                            "scope": "playlist-modify-private playlist-modify-public",
                        },
                    )
                else:
                    self._send(400, {"error": "unsupported_grant_type"})
                return
            if self._api_failure():
                return
            if path == "/v1/me/playlists":
                payload = json.loads(body or b"{}")
                with fake._lock:
                    playlist_id = f"pl{len(fake.playlists) + 1:020d}"
                    fake.playlists[playlist_id] = {
                        "name": payload.get("name"),
                        "public": payload.get("public"),
                        "description": payload.get("description"),
                        "items": [],
                    }
                self._send(
                    201,
                    {
                        "id": playlist_id,
                        "name": payload.get("name"),
                        "external_urls": {"spotify": f"https://open.spotify.com/playlist/{playlist_id}"},
                    },
                )
                return
            match = re.fullmatch(r"/v1/playlists/(\w+)/items", path)
            if match and match.group(1) in fake.playlists:
                payload = json.loads(body or b"[]")
                uris = payload["uris"] if isinstance(payload, dict) else payload
                with fake._lock:
                    fake.playlists[match.group(1)]["items"].extend(uris)
                self._send(201, {"snapshot_id": "snap"})
                return
            self._send(404, {"error": {"status": 404, "message": "Not found"}})

        def do_GET(self) -> None:  # noqa: N802
            self._record(b"")
            with fake._lock:
                fake.in_flight += 1
                fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
            try:
                self._get()
            finally:
                with fake._lock:
                    fake.in_flight -= 1

        def _get(self) -> None:
            path = urlparse(self.path).path
            if fake.latency_s:
                fake._stopping.wait(fake.latency_s)
            if self._api_failure():
                return
            if path == "/v1/me":
                self._send(200, {"id": "fake-user", "display_name": "Fake User"})
                return
            match = re.fullmatch(r"/v1/tracks/([0-9A-Za-z]+)", path)
            if match and match.group(1) not in fake.unknown_ids:
                self._send(200, fake.track(match.group(1)))
                return
            self._send(404, {"error": {"status": 404, "message": "Non existing id"}})

    return Handler
