"""The gateway image installs the project without the [train] extra: that dependency set must not bring torch,
and the gateway must import and serve with torch (and the training/export code) out of reach."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from importlib import metadata

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy.conftest import ROOT

TRAINING_STACK = {"torch", "torchvision", "torchaudio", "transformers", "onnxscript", "tensorflow", "keras"}


def runtime_requirements() -> list[Requirement]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return [Requirement(r) for r in pyproject["project"]["dependencies"]]


def installed_closure(requirements: list[Requirement]) -> set[str]:
    """Names pip would install for these requirements, walked through the installed distributions' metadata."""
    seen: set[str] = set()
    queue = [(r, frozenset(r.extras)) for r in requirements]
    while queue:
        requirement, extras = queue.pop()
        name = canonicalize_name(requirement.name)
        key = f"{name}[{','.join(sorted(extras))}]"
        if key in seen:
            continue
        seen.add(key)
        try:
            distribution = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # not installed here (another platform's dependency): nothing more to walk
        for text in distribution.requires or []:
            child = Requirement(text)
            if child.marker is None or any(child.marker.evaluate({"extra": extra}) for extra in (extras or {""})):
                queue.append((child, frozenset(child.extras)))
    return {k.split("[")[0] for k in seen}


def test_runtime_dependencies_exclude_the_training_stack():
    direct = {canonicalize_name(r.name) for r in runtime_requirements()}
    assert not direct & TRAINING_STACK
    closure = installed_closure(runtime_requirements())
    assert "fastapi" in closure and "tritonclient" in closure
    assert not closure & TRAINING_STACK, f"the gateway image would install {sorted(closure & TRAINING_STACK)}"


BLOCKED_IMPORT_PROBE = r"""
import importlib.abc, sys

BLOCKED = {"torch", "torchvision", "transformers", "training", "export"}

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"{name} is not installed in the gateway image", name=name)
        return None

sys.meta_path.insert(0, Block())

import gateway.app
from pathlib import Path
from fastapi.testclient import TestClient
from gateway.settings import Settings

repository = Path("model_repository/python")
if (repository / "text_emotion" / "model.json").exists():
    settings = Settings(_env_file=None, backend="local", models=["text_emotion"], model_repository=repository)
    with TestClient(gateway.app.create_app(settings)) as client:
        assert client.get("/healthz").status_code == 200
        response = client.post("/text_emotion", params={"recommend": "false"}, json={"text": "this is wonderful"})
        assert response.status_code == 200, response.text
        assert client.get("/metrics").status_code == 200
    print("served")
else:
    print("imported")
assert not [m for m in sys.modules if m.split(".")[0] in BLOCKED], sorted(sys.modules)
"""


def test_gateway_imports_and_serves_without_torch():
    result = subprocess.run([sys.executable, "-c", BLOCKED_IMPORT_PROBE], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert result.stdout.strip().splitlines()[-1] in {"served", "imported"}


def test_plain_import_leaves_torch_unloaded():
    """The exact check the gateway Dockerfile runs at build time."""
    result = subprocess.run(
        [sys.executable, "-I", "-c", "import sys; import gateway.app; assert 'torch' not in sys.modules"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-4000:]


IMPORTED_MODULES_PROBE = r"""
import json, sys
before = {m.split(".")[0] for m in sys.modules}
import gateway.app
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules} - before)))
"""


# Imported only when present, inside a try/except of the library that asks for them: the test extra brings them here
# (schemathesis, selenium), the image works without them. anyio: sniffio; requests: PySocks for SOCKS proxies.
OPTIONAL_IMPORTS = {"sniffio", "socks"}


def test_every_module_the_gateway_imports_comes_from_a_runtime_dependency():
    """A module installed here only through the [train] or [test] extra would be missing from the image."""
    result = subprocess.run([sys.executable, "-c", IMPORTED_MODULES_PROBE], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    imported = json.loads(result.stdout.strip().splitlines()[-1])
    closure = installed_closure(runtime_requirements())
    owners = metadata.packages_distributions()
    missing = {}
    for module in imported:
        if module in sys.stdlib_module_names or module in {"gateway", "emotune"} or module in OPTIONAL_IMPORTS:
            continue
        distributions = {canonicalize_name(d) for d in owners.get(module, [])}
        if not distributions:
            continue  # compiled helpers of a package (scipy's, Cython's runtime): they come with their owner
        if not distributions & closure:
            missing[module] = sorted(distributions)
    assert not missing, f"imported by the gateway but not in [project] dependencies: {missing}"
