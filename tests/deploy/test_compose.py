"""docker/compose.yaml and docker/prometheus.yml: the Compose CLI where it is installed, the Compose
Specification's JSON schema always, and the wiring between the services."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from gateway.settings import Settings
from tests.deploy.conftest import DOCKER, find_tool

COMPOSE_FILE = DOCKER / "compose.yaml"


def compose_cli() -> list[str] | None:
    """``docker compose`` (the CLI plugin) or a standalone ``docker-compose`` v2; neither needs an engine for ``config``."""
    docker = find_tool("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30).returncode == 0:
        return [docker, "compose"]
    standalone = find_tool("docker-compose")
    if standalone:
        version = subprocess.run([standalone, "version"], capture_output=True, text=True, timeout=30).stdout
        if "v2." in version:
            return [standalone]
    return None


def test_compose_config_accepts_the_file():
    cli = compose_cli()
    if cli is None:
        pytest.skip("no Compose v2 CLI here (the docker CLI without its compose plugin)")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPOTIPY_", "EMOTUNE_"))}
    result = subprocess.run([*cli, "-f", str(COMPOSE_FILE), "config", "--format", "json"], capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    resolved = json.loads(result.stdout)
    assert set(resolved["services"]) == {"triton", "gateway", "prometheus"}
    # Unset credentials stay unset in the container rather than becoming empty strings.
    environment = resolved["services"]["gateway"]["environment"]
    for secret in ("SPOTIPY_CLIENT_ID", "SPOTIPY_CLIENT_SECRET", "EMOTUNE_SPOTIFY_REFRESH_TOKEN"):
        assert environment.get(secret) is None, secret


def test_compose_matches_the_compose_specification_schema():
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(COMPOSE_FILE)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_images_are_pinned(compose: dict):
    for name, service in compose["services"].items():
        image = service["image"]
        assert ":" in image.split("/")[-1] and not image.endswith(":latest"), f"{name}: {image} is not pinned"


def test_triton_reserves_a_gpu_and_publishes_no_port_on_the_host(compose: dict):
    """The gateway and Prometheus reach Triton on the project network; a web page on the host reaches none of its ports."""
    triton = compose["services"]["triton"]
    devices = triton["deploy"]["resources"]["reservations"]["devices"]
    assert any(d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", []) for d in devices)
    assert "ports" not in triton
    assert set(triton["expose"]) == {"8000", "8001", "8002"}
    assert "command" not in triton and "entrypoint" not in triton, "the image's CMD (docker/triton-serve.sh) carries the closing flags"
    assert "/v2/health/ready" in " ".join(triton["healthcheck"]["test"])
    assert triton["build"]["dockerfile"] == "docker/triton.Dockerfile"


def test_gateway_talks_to_triton_over_grpc_with_valid_settings(compose: dict, monkeypatch):
    gateway = compose["services"]["gateway"]
    env = gateway["environment"]
    assert env["EMOTUNE_BACKEND"] == "triton"
    assert env["EMOTUNE_TRITON_HOST"] == "triton"
    assert env["EMOTUNE_TRITON_GRPC_PORT"] == "8001"
    assert gateway["depends_on"]["triton"]["condition"] == "service_healthy"
    grace = int(gateway["stop_grace_period"].rstrip("s"))
    assert grace > Settings.model_fields["graceful_shutdown_s"].default, "Docker's SIGKILL must come after the graceful shutdown"
    assert gateway["build"]["dockerfile"] == "docker/gateway.Dockerfile"
    # Every EMOTUNE_* variable names a real setting, and the values parse.
    for key in env:
        if key.startswith("EMOTUNE_"):
            assert key[len("EMOTUNE_") :].lower() in Settings.model_fields, f"{key} is not a setting"
    for key in [k for k in os.environ if k.startswith("EMOTUNE_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        if key.startswith("EMOTUNE_") and value is not None:  # None: passed through from the host when set
            monkeypatch.setenv(key, str(value))
    settings = Settings(_env_file=None)
    assert settings.backend == "triton" and settings.triton_grpc_url == "triton:8001" and settings.log_json


def test_prometheus_scrapes_gateway_and_triton_metrics(compose: dict):
    prometheus = compose["services"]["prometheus"]
    assert any(v.startswith("./prometheus.yml:") for v in prometheus["volumes"])
    config = yaml.safe_load((DOCKER / "prometheus.yml").read_text())
    targets = {
        job["job_name"]: (job.get("metrics_path", "/metrics"), [t for sc in job["static_configs"] for t in sc["targets"]])
        for job in config["scrape_configs"]
    }
    assert targets["emotune-gateway"] == ("/metrics", ["gateway:8080"])
    assert targets["triton"] == ("/metrics", ["triton:8002"])
    assert compose["services"]["gateway"]["environment"]["EMOTUNE_PORT"] == "8080"
