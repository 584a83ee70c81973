# syntax=docker/dockerfile:1
# Triton Inference Server on GPU, serving the "onnxruntime" flavour of model_repository/ with the native
# onnxruntime backend and its TensorRT FP16 accelerator (settings in each config.pbtxt, written by export/repository.py).
#
# Build from the repository root:
#   docker build -f docker/triton.Dockerfile -t emotune-triton:0.1.0 .
#
# 24.10-py3 is Triton server 2.51, the same server version as the CPU build in the nvidia-pytriton wheel and as
# the pinned tritonclient, so the gRPC API the gateway speaks is the one it was tested against.
FROM nvcr.io/nvidia/tritonserver:24.10-py3

# The TensorRT accelerator caches built engines here (trt_engine_cache_path in config.pbtxt); compose mounts a
# volume on it so a restart skips the minutes-long engine build. Owned by the image's non-root user (uid 1000).
RUN mkdir -p /tmp/triton_trt_cache && chown 1000:1000 /tmp/triton_trt_cache

COPY --chown=1000:1000 model_repository/onnxruntime /models

# The flags that close Triton's control surface live in one script that every deployment runs (see its header).
COPY --chmod=755 docker/triton-serve.sh /usr/local/bin/emotune-triton-serve

# triton-server (uid 1000) ships with the official image.
USER 1000:1000

# 8001 gRPC: the gateway's inference and health calls. 8000 HTTP: health only (the healthcheck below); every other
# HTTP API needs the control key. 8002: Prometheus metrics. None of them is for the public: see docs/deployment.md.
EXPOSE 8000 8001 8002

# Ready only once every model has loaded (and TensorRT engines are built): allow a long start.
HEALTHCHECK --interval=15s --timeout=5s --start-period=600s --retries=3 \
    CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8000/v2/health/ready"]

# The image's entrypoint (nvidia_entrypoint.sh) stays and runs this command.
CMD ["/usr/local/bin/emotune-triton-serve"]
