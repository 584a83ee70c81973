"""bench.gateway_ab's quick mode end to end: one tritonserver, a gateway per variant, interleaved rounds, a report section."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.common import REPOSITORY, TEXT_MODEL

pytestmark = pytest.mark.skipif(not (REPOSITORY / TEXT_MODEL / "config.pbtxt").exists(), reason=f"no {TEXT_MODEL} in {REPOSITORY}")


def test_quick_interleaved_comparison_measures_every_variant_next_to_the_reference(tmp_path: Path):
    from bench.gateway_ab import run
    from bench.report import gateway_ab_section

    result = run(quick=True, out=tmp_path)
    rows = {(r["variant"], r["concurrency"]): r for r in result["rows"]}
    assert set(rows) == {("ref", 1), ("ref", 32), ("coalesce_off", 1), ("coalesce_off", 32)}
    assert all(r["throughput_rps"] > 0 and r["rounds"] == 1 for r in rows.values())
    assert rows[("ref", 32)]["median_ratio_to_ref"] == 1.0
    assert (tmp_path / "gateway_ab.json").exists()
    assert "coalesce_off" in gateway_ab_section(result)
