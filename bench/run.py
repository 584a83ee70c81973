"""``emotune bench``: every benchmark in one run, then the report.

Order: the ceiling (machine matmul, model FLOP/s) → Triton (perf_analyzer sweeps) → the gateway and, right after
it, the original design's Flask server under the same load → the tuning ablations → the face detector's settings →
the soak (ten minutes of mixed load at 80% of peak) → the report.
Each step writes its JSON into the report folder; a step that fails is recorded in the report's notes and the
others still run.

    emotune bench [--quick] [--out bench/report] [--only ceiling triton gateway tuning face_detection soak]
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
import traceback
from pathlib import Path

from bench import report
from bench.common import step_parser

STEPS = ("ceiling", "triton", "gateway", "tuning", "face_detection", "soak")


def _step(name: str):
    if name == "ceiling":
        from bench.ceiling import run
    elif name == "triton":
        from bench.triton_perf import run
    elif name == "gateway":
        from bench.gateway_load import run
    elif name == "face_detection":
        from bench.face_detection import run
    elif name == "soak":
        from bench.soak import run
    else:
        from bench.tuning import run
    return run


def run_bench(args: argparse.Namespace) -> dict:
    out = Path(getattr(args, "out", None) or "bench/report")
    quick = bool(getattr(args, "quick", False))
    steps = list(getattr(args, "only", None) or STEPS)
    out.mkdir(parents=True, exist_ok=True)
    partial = steps != list(STEPS)
    notes = report.previous_notes(out) if partial else []  # a partial run keeps the notes on the tables it leaves alone
    started_at = time.strftime("%H:%M", time.gmtime())
    for name in steps:
        started = time.monotonic()
        print(f"=== bench: {name}{' (quick)' if quick else ''} ===", flush=True)
        try:
            _step(name)(quick, out)
        except Exception as exc:  # noqa: BLE001  (one broken step must not lose the others' results)
            traceback.print_exc()
            notes.append(f"step `{name}` failed: {type(exc).__name__}: {str(exc)[:300]}")
        notes.append(f"step `{name}` took {time.monotonic() - started:.0f} s")
    if partial:
        notes.append(
            f"Steps {', '.join(steps)} re-run {started_at}–{time.strftime('%H:%M', time.gmtime())} UTC; their tables and targets "
            "are from this run, every other table from the earlier runs the notes above describe."
        )
    command = (
        shlex.join(["emotune", *sys.argv[1:]])
        if sys.argv and sys.argv[0].endswith("emotune")
        else "emotune bench" + (" --quick" if quick else "") + (f" --only {' '.join(steps)}" if partial else "")
    )
    data = report.build(out, command, quick, notes, steps=steps if partial else None)
    print(f"report: {out / 'REPORT.md'}")
    for row in data["headline"]:
        print(f"  {'MET ' if row['met'] else 'MISS' if row['met'] is False else '  - '} {row['target']}: {row['measured']}")
    failed = [n for n in notes if "failed" in n]
    if failed:
        raise SystemExit("; ".join(failed))
    return data


def main(argv: list[str] | None = None) -> None:
    p = step_parser(__doc__)
    p.add_argument("--only", nargs="+", choices=STEPS)
    run_bench(p.parse_args(argv))


if __name__ == "__main__":
    main()
