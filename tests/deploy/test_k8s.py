"""deploy/k8s: every object against the Kubernetes OpenAPI schemas (kubernetes-validate, bundled, offline, strict:
unknown fields fail), the kustomization rendered by kubectl where it is installed, and the wiring between objects."""

from __future__ import annotations

import subprocess

import kubernetes_validate
import pytest
import yaml

from gateway.settings import Settings
from tests.deploy.conftest import K8S, find_tool, load_yaml_documents

# The oldest Kubernetes minor still common in managed clusters, and the newest the validator knows.
KUBERNETES_VERSIONS = ["1.29.0", kubernetes_validate.latest_version()]


def by_kind(objects: list[dict], kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("path", sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml"))
def test_manifest_matches_kubernetes_schema(path: str, version: str):
    for document in load_yaml_documents(K8S / path):
        kubernetes_validate.validate(document, version, strict=True)


def test_validator_rejects_unknown_fields():
    """Guards the check above: strict validation must fail on a misspelt field."""
    deployment = load_yaml_documents(K8S / "gateway.yaml")[0]
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGett"] = {"path": "/readyz"}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)


def test_kustomization_lists_every_manifest_but_the_secret_template():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk - {"spotify-secret.yaml"}
    assert kustomization["namespace"] == "emotune"


def test_kustomize_build_renders_valid_objects():
    kubectl = find_tool("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed")
    result = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    rendered = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert {o["kind"] for o in rendered} >= {"Namespace", "ConfigMap", "Deployment", "Service", "HorizontalPodAutoscaler"}
    for obj in rendered:
        kubernetes_validate.validate(obj, KUBERNETES_VERSIONS[-1], strict=True)
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == "emotune"


def test_triton_deployment_has_a_gpu_and_health_probes(k8s_objects):
    pod = by_kind(k8s_objects, "Deployment")["emotune-triton"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert str(container["resources"]["limits"]["nvidia.com/gpu"]) == "1"
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert "startupProbe" in container, "engine builds take minutes: liveness must not kill a starting server"
    assert {p["containerPort"] for p in container["ports"]} == {8000, 8001, 8002}
    assert "command" not in container and "args" not in container, "the image's CMD (docker/triton-serve.sh) carries the closing flags"
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert "/tmp/triton_trt_cache" in mounts and "/dev/shm" in mounts
    assert pod["securityContext"]["runAsNonRoot"] is True


def test_gateway_deployment_reads_settings_and_optional_spotify_secret(k8s_objects):
    deployment = by_kind(k8s_objects, "Deployment")["emotune-gateway"]
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["enableServiceLinks"] is False, "service links would inject EMOTUNE_TRITON_PORT=tcp://... variables"
    assert container["envFrom"][0]["configMapRef"]["name"] == "emotune-settings"
    secret = by_kind(k8s_objects, "Secret")["emotune-spotify"]
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "secretKeyRef" in e.get("valueFrom", {})}
    assert set(refs) == {"SPOTIPY_CLIENT_ID", "SPOTIPY_CLIENT_SECRET", "EMOTUNE_SPOTIFY_REFRESH_TOKEN"}
    for ref in refs.values():
        assert ref["name"] == "emotune-spotify" and ref["key"] in secret["stringData"] and ref["optional"] is True
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsUser"] == 10001  # the gateway image's USER
    assert "/tmp" in {m["mountPath"] for m in container["volumeMounts"]}


def test_configmap_holds_valid_settings_pointing_at_the_triton_service(k8s_objects, monkeypatch):
    data = by_kind(k8s_objects, "ConfigMap")["emotune-settings"]["data"]
    for key in data:
        assert key.startswith("EMOTUNE_") and key[len("EMOTUNE_") :].lower() in Settings.model_fields, f"{key} is not a setting"
    import os

    for key in [k for k in os.environ if k.startswith("EMOTUNE_")]:
        monkeypatch.delenv(key)
    for key, value in data.items():
        monkeypatch.setenv(key, value)
    settings = Settings(_env_file=None)
    services = by_kind(k8s_objects, "Service")
    triton_ports = {p["name"]: p["port"] for p in services["emotune-triton"]["spec"]["ports"]}
    assert settings.backend == "triton"
    assert settings.triton_host == "emotune-triton" and settings.triton_grpc_port == triton_ports["grpc"]
    assert settings.workers == 1, "metrics are per process: one worker per pod, scale with replicas"


def test_services_select_their_deployments(k8s_objects):
    deployments = by_kind(k8s_objects, "Deployment")
    for name, service in by_kind(k8s_objects, "Service").items():
        pod_labels = deployments[name]["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= pod_labels.items()
        container_ports = {p["name"] for p in deployments[name]["spec"]["template"]["spec"]["containers"][0]["ports"]}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= container_ports


def test_autoscalers_target_deployments_on_request_rate_and_queue_time(k8s_objects):
    deployments = by_kind(k8s_objects, "Deployment")
    hpas = by_kind(k8s_objects, "HorizontalPodAutoscaler")
    for hpa in hpas.values():
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert hpa["spec"]["scaleTargetRef"]["name"] in deployments
        assert hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    gateway_metrics = {m["pods"]["metric"]["name"] for m in hpas["emotune-gateway"]["spec"]["metrics"] if m["type"] == "Pods"}
    triton_metrics = {m["pods"]["metric"]["name"] for m in hpas["emotune-triton"]["spec"]["metrics"] if m["type"] == "Pods"}
    assert gateway_metrics == {"emotune_http_requests_per_second"}
    assert triton_metrics == {"triton_queue_time_us_per_request"}


def test_images_are_pinned(k8s_objects):
    for deployment in by_kind(k8s_objects, "Deployment").values():
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            image = container["image"]
            assert ":" in image.split("/")[-1] and not image.endswith(":latest"), image


def test_only_the_gateway_reaches_tritons_grpc_and_nothing_its_http(k8s_objects):
    service = by_kind(k8s_objects, "Service")["emotune-triton"]
    assert {p["name"] for p in service["spec"]["ports"]} == {"grpc", "metrics"}, "HTTP (health only) is for the kubelet's probes"
    policy = by_kind(k8s_objects, "NetworkPolicy")["emotune-triton"]["spec"]
    assert policy["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "emotune-triton"} and policy["policyTypes"] == ["Ingress"]
    allowed = {port["port"]: rule["from"] for rule in policy["ingress"] for port in rule["ports"]}
    assert set(allowed) == {"grpc", "metrics"}
    assert allowed["grpc"] == [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "emotune-gateway"}}}]
