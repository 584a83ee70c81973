"""OpenAPI tells the truth: schemathesis generates requests from the gateway's own schema (examples, coverage of
boundaries, fuzzing) against the real gateway process, and finds no 5xx, no undocumented status and no body that
breaks its documented schema."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPOSITORY, start_gateway, stop_gateway

CHECKS = "not_a_server_error,status_code_conformance,response_schema_conformance,content_type_conformance"


def test_schemathesis_finds_no_server_error_and_no_undocumented_status(tmp_path):
    st = Path(sys.executable).with_name("st")
    if not st.exists() and shutil.which("st") is None:
        pytest.skip("schemathesis is not installed (the [test] extra has it)")
    process, url = start_gateway(
        {
            "EMOTUNE_BACKEND": "local",
            "EMOTUNE_MODEL_REPOSITORY": str(REPOSITORY),
            "EMOTUNE_MODELS": '["text_emotion", "speech_emotion", "face_emotion", "face_detection", "face_pipeline"]',
        },
        tmp_path / "gw.log",
    )
    try:
        run = subprocess.run(
            [
                str(st if st.exists() else "st"),
                "run",
                f"{url}/openapi.json",
                "--checks",
                CHECKS,
                "--max-examples",
                "12",
                "--generation-deterministic",
                "--phases",
                "examples,coverage,fuzzing",
                "--no-color",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=tmp_path,
        )
    finally:
        stop_gateway(process)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
