#!/bin/sh
# tritonserver as every GPU deployment runs it (docker/triton.Dockerfile's CMD; Compose and Kubernetes use that CMD
# unchanged), with Triton's control surface closed (docs/deployment.md, "Ports"):
# - --model-control-mode=none: the image's /models load at start and nothing loads or unloads at run time, so a
#   POST /v2/repository/models/<any>/load carrying a config and a model.py is refused and runs nothing;
# - HTTP answers health only (the healthchecks use it); every other HTTP API, and on gRPC everything but health,
#   metadata and inference (what the gateway uses), needs the header emotune-triton-control (gRPC:
#   triton-grpc-protocol-emotune-triton-control) with the value of TRITON_CONTROL_KEY, random per start when unset,
#   so that nobody holds it.
# Extra arguments are appended (a later scalar flag wins over the one above).
set -eu
key="${TRITON_CONTROL_KEY:-$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')}"
exec tritonserver \
    --model-repository="${TRITON_MODEL_REPOSITORY:-/models}" \
    --model-control-mode=none \
    --strict-readiness=true \
    --exit-on-error=true \
    --allow-metrics=true \
    --allow-gpu-metrics=true \
    --metrics-port=8002 \
    "--http-restricted-api=metadata,inference,shared-memory,model-config,model-repository,statistics,trace,logging:emotune-triton-control=${key}" \
    "--grpc-restricted-protocol=shared-memory,model-config,model-repository,statistics,trace,logging:emotune-triton-control=${key}" \
    "$@"
