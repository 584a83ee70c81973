"""The CLI never changes the cached settings object, and `emotune bench` does not make the CLI and bench import
each other (bench uses the launcher; the CLI starts bench as its own program)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_the_cli_imports_no_bench_module_and_bench_imports_no_cli():
    assert not {n for n in _imports(ROOT / "emotune" / "cli.py") if n == "bench" or n.startswith("bench.")}
    for path in (ROOT / "bench").glob("*.py"):
        assert "emotune.cli" not in _imports(path), path


def test_command_line_values_reach_a_copy_and_the_environment_not_the_cached_settings():
    code = """
import os
from emotune.cli import _settings, build_parser
from gateway.settings import get_settings
cached = get_settings()
before = cached.model_dump()
args = build_parser().parse_args(["serve", "--port", "18123", "--triton-grpc-port", "18124", "--backend", "local"])
settings = _settings(args)
assert settings is not cached and cached.model_dump() == before, "the cached settings changed"
assert (settings.port, settings.triton_grpc_port, settings.backend) == (18123, 18124, "local")
assert os.environ["EMOTUNE_PORT"] == "18123" and os.environ["EMOTUNE_BACKEND"] == "local"
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_emotune_bench_runs_bench_as_its_own_program(tmp_path: Path):
    """bench.run's own parser answers (its step names are checked there, not in the CLI): the CLI handed the process over."""
    result = subprocess.run(
        [sys.executable, "-m", "emotune.cli", "bench", "--out", str(tmp_path), "--only", "no_such_step"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "invalid choice: 'no_such_step'" in result.stderr, result.stderr[-2000:]
    assert "run.py" in result.stderr.splitlines()[0]
