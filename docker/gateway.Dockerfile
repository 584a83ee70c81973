# syntax=docker/dockerfile:1
# The gateway: FastAPI + tritonclient + preprocessing. Installs the project WITHOUT the [train] extra: no torch.
#
# Build from the repository root:
#   docker build -f docker/gateway.Dockerfile -t emotune-gateway .

FROM python:3.11.10-slim-bookworm AS build

ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /src

# Dependencies first, from pyproject.toml alone, so editing code does not reinstall them.
COPY pyproject.toml README.md ./
RUN mkdir emotune gateway \
    && touch emotune/__init__.py gateway/__init__.py \
    && /opt/venv/bin/pip install --no-cache-dir . \
    && rm -rf emotune gateway build ./*.egg-info

COPY emotune ./emotune
COPY gateway ./gateway
RUN /opt/venv/bin/pip install --no-cache-dir --no-deps --force-reinstall . \
    && /opt/venv/bin/python -I -c "import sys, gateway.app; assert 'torch' not in sys.modules"

# The gateway reads labels, tokenizers and model.json from the repository; the weights stay in the Triton image.
COPY model_repository/onnxruntime ./model_repository/onnxruntime
RUN find ./model_repository/onnxruntime -mindepth 2 -maxdepth 2 -type d -name '[0-9]*' -prune -exec rm -rf {} +


FROM python:3.11.10-slim-bookworm

# No system codec packages: PyAV's wheel carries FFmpeg's decoders (mp3, m4a, webm, ogg) and soundfile's carries libsndfile.

RUN groupadd --system --gid 10001 emotune \
    && useradd --system --uid 10001 --gid emotune --home-dir /app --no-create-home --shell /usr/sbin/nologin emotune

COPY --from=build /opt/venv /opt/venv
COPY --from=build /src/model_repository /app/model_repository
WORKDIR /app

# Settings are EMOTUNE_* variables (gateway/settings.py); compose and the Kubernetes ConfigMap override them.
# NUMBA_CACHE_DIR: librosa's cached numba functions need a writable cache, and site-packages is read-only here.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    NUMBA_CACHE_DIR=/tmp/numba_cache \
    EMOTUNE_HOST=0.0.0.0 \
    EMOTUNE_PORT=8080 \
    EMOTUNE_BACKEND=triton \
    EMOTUNE_TRITON_HOST=triton \
    EMOTUNE_TRITON_GRPC_PORT=8001 \
    EMOTUNE_MODEL_REPOSITORY=/app/model_repository/onnxruntime \
    EMOTUNE_LOG_JSON=true

# Numeric, so Kubernetes can verify runAsNonRoot.
USER 10001:10001
EXPOSE 8080

# Liveness of the process only: whether Triton is reachable is /readyz's job.
HEALTHCHECK --interval=15s --timeout=4s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('EMOTUNE_PORT', '8080'), timeout=3)"]

# One uvicorn worker per container: Prometheus metrics are per process; scale with replicas.
CMD ["emotune", "serve"]
