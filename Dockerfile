# syntax=docker/dockerfile:1
# ReID Service images (see deploy/README-deploy.md):
#   docker build -t reid-service:gpu .                          serving, onnxruntime-gpu + faiss-gpu, no torch
#   docker build -t reid-service:cpu --build-arg VARIANT=cpu .  serving, onnxruntime + faiss-cpu
#   docker build -t reid-service:train --target train .         `reid train` / `reid export`, CUDA torch
#
# CUDA: the GPU image installs `.[gpu]` under deploy/constraints-gpu.txt. Both GPU wheels then need CUDA 12:
#   - onnxruntime-gpu 1.20-1.26 (PyPI) is built for CUDA 12.x + cuDNN 9 and loads libcudart.so.12,
#     libcublas(Lt).so.12, libcurand.so.10, libcufft.so.11 and libcudnn*.so.9 from the library path. Its
#     optional [cuda,cudnn] extras are not installed: the base image provides those libraries. (1.27 and
#     later are CUDA 13 builds, hence the pin.)
#   - faiss-gpu 1.15 (PyPI) needs CUDA >= 12.6: it depends on nvidia-cuda-runtime-cu12 / nvidia-cublas-cu12 /
#     nvidia-curand-cu12 (pip wheels, 12.9 today) and `import faiss` preloads them.
#   nvidia/cuda:12.9.1-cudnn-runtime-ubuntu24.04 ships CUDA 12.9 runtime libraries + cuDNN 9, so both are
#   satisfied by one CUDA 12 runtime (the same minor as the nvidia-*-cu12 wheels). The host needs the NVIDIA
#   driver >= 575 (or >= 525 through CUDA minor-version compatibility) and the NVIDIA Container Toolkit.
ARG VARIANT=gpu
ARG CUDA_IMAGE=nvidia/cuda:12.9.1-cudnn-runtime-ubuntu24.04
ARG BASE_IMAGE=ubuntu:24.04

# ---- builder: a virtualenv with the project and its serving extra (never torch) ----------------------------
FROM ${BASE_IMAGE} AS builder
ARG VARIANT
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PATH=/opt/venv/bin:$PATH
RUN python3 -m venv /opt/venv && pip install --upgrade pip
WORKDIR /src
COPY pyproject.toml README.md ./
COPY deploy/constraints-gpu.txt deploy/constraints-cpu.txt deploy/
COPY service service
COPY training training
RUN pip install -c "deploy/constraints-${VARIANT}.txt" ".[${VARIANT},milvus]" \
    && python -c "import importlib.util as u, sys; sys.exit(u.find_spec('torch') is not None)"

# ---- runtime bases: the CUDA runtime (gpu) or plain Ubuntu (cpu), same Ubuntu and Python as the builder ----
FROM ${CUDA_IMAGE} AS runtime-gpu
FROM ${BASE_IMAGE} AS runtime-cpu

# ---- serve: the default target --------------------------------------------------------------------------------
FROM runtime-${VARIANT} AS serve
ARG VARIANT
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 reid \
    && useradd --system --uid 10001 --gid reid --home-dir /app --no-create-home --shell /usr/sbin/nologin reid \
    && mkdir -p /app/models /app/data \
    && chown reid:reid /app/data
COPY --from=builder /opt/venv /opt/venv
# Models baked into the image (optional: BuildKit skips an absent models/); compose mounts ./models over them.
COPY --chown=reid:reid model[s] /app/models/
WORKDIR /app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    REID_VARIANT=${VARIANT} \
    REID_MODELS_DIR=/app/models \
    REID_DATA_DIR=/app/data \
    REID_SHUTDOWN_DRAIN_S=2 \
    REID_GRACEFUL_TIMEOUT_S=20
USER reid
EXPOSE 8000
VOLUME ["/app/data"]
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python3", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4).status != 200)"]
STOPSIGNAL SIGTERM
# SIGTERM: /ready → 503 for REID_SHUTDOWN_DRAIN_S, in-flight requests get REID_GRACEFUL_TIMEOUT_S, the gallery
# snapshot is written, exit 0. docker stop / compose stop_grace_period must exceed the sum (compose: 40 s).
ENTRYPOINT ["reid", "serve", "--host", "0.0.0.0", "--port", "8000"]
CMD []

# ---- train: `reid train` + `reid export` with CUDA torch (docker compose --profile train) --------------------
FROM ${BASE_IMAGE} AS train
ARG TORCH_VERSION=2.13.0
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv libgomp1 \
    && rm -rf /var/lib/apt/lists/*
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 \
    HOME=/tmp MPLBACKEND=Agg
RUN python3 -m venv /opt/venv && pip install --upgrade pip
# torch from PyPI is the CUDA build for Linux x86_64 (its CUDA libraries come as nvidia-* wheels); pinned to
# the version the tests run (Makefile TORCH). onnxruntime (the `cpu` extra) checks the export's parity.
RUN pip install "torch==${TORCH_VERSION}"
WORKDIR /app
COPY pyproject.toml README.md ./
COPY service service
COPY training training
COPY --chmod=755 deploy/train-export.sh /usr/local/bin/reid-train-export
RUN pip install ".[cpu,train]"
ENTRYPOINT ["reid-train-export"]
