# syntax=docker/dockerfile:1
#
# Recserve images, one Dockerfile, four stages (docs/deploy.md):
#   serve      the HTTP service: FastAPI + onnxruntime + Redis client, no torch   (docker build --target serve)
#   serve-gpu  the same on CUDA 13 + cuDNN 9, for onnxruntime-gpu's CUDA provider (docker build --target serve-gpu)
#   train      `recserve` with torch 2.13.0 (CPU wheels): train, export, fetch data (docker build --target train)
#   base       what serve and train share
#
# Both runtime users are uid 10001 so bundles written by `train` into the artifacts volume are readable
# by `serve`. The service reads bundles from $RECSERVE_ARTIFACTS (/artifacts).

ARG PYTHON_IMAGE=python:3.11-slim
ARG CUDA_IMAGE=nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

# ---------------------------------------------------------------------------------------------- base
FROM ${PYTHON_IMAGE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN groupadd --system --gid 10001 recserve \
 && useradd --system --uid 10001 --gid recserve --home-dir /app --shell /usr/sbin/nologin recserve \
 && mkdir -p /app /artifacts \
 && chown recserve:recserve /artifacts
WORKDIR /app
# Package metadata first: the dependency layers below stay cached while the code changes.
COPY pyproject.toml README.md ./

# --------------------------------------------------------------------------------------------- serve
FROM base AS serve
COPY bundle/ ./bundle/
COPY recserve/ ./recserve/
COPY service/ ./service/
RUN pip install ".[serve]" \
 && rm -rf build *.egg-info
ENV RECSERVE_ARTIFACTS=/artifacts
VOLUME /artifacts
USER recserve
EXPOSE 8000
# Readiness, not liveness: healthy once the models are loaded, so an empty or wrong artifacts volume shows as
# unhealthy (GET /readyz says why) instead of healthy and answering 503. Docker restarts no container for it.
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=2).status != 200)"]
CMD ["uvicorn", "service.app:app", "--host", "0.0.0.0", "--port", "8000"]

# ----------------------------------------------------------------------------------------- serve-gpu
# onnxruntime-gpu's CUDA execution provider needs the CUDA 13 runtime and cuDNN 9; the host needs the
# NVIDIA driver (R580 or newer for CUDA 13) and the NVIDIA Container Toolkit.
FROM ${CUDA_IMAGE} AS serve-gpu
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:${PATH}
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/venv \
 && groupadd --system --gid 10001 recserve \
 && useradd --system --uid 10001 --gid recserve --home-dir /app --shell /usr/sbin/nologin recserve \
 && mkdir -p /app /artifacts \
 && chown recserve:recserve /artifacts
WORKDIR /app
COPY pyproject.toml README.md ./
COPY bundle/ ./bundle/
COPY recserve/ ./recserve/
COPY service/ ./service/
RUN pip install ".[serve]" \
 && rm -rf build *.egg-info
ENV RECSERVE_ARTIFACTS=/artifacts \
    RECSERVE_PROVIDERS=auto
VOLUME /artifacts
USER recserve
EXPOSE 8000
# Readiness, as in serve.
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=2).status != 200)"]
CMD ["uvicorn", "service.app:app", "--host", "0.0.0.0", "--port", "8000"]

# --------------------------------------------------------------------------------------------- train
# torch comes from the PyTorch CPU index first (the PyPI wheel would pull the CUDA libraries, GBs); the
# project install then finds torch==2.13.0 already satisfied.
FROM base AS train
ARG TORCH_VERSION
ARG TORCH_INDEX_URL
RUN pip install --index-url ${TORCH_INDEX_URL} "torch==${TORCH_VERSION}"
COPY models/ ./models/
COPY training/ ./training/
# The bundle contract (torch-free) that training writes with; `recserve serve` also runs here, so service/ too.
COPY bundle/ ./bundle/
COPY recserve/ ./recserve/
COPY service/ ./service/
RUN pip install --extra-index-url ${TORCH_INDEX_URL} ".[train,glove]" "torch==${TORCH_VERSION}" \
 && rm -rf build *.egg-info
ENV RECSERVE_ARTIFACTS=/artifacts \
    MPLCONFIGDIR=/tmp/matplotlib
VOLUME /artifacts
USER recserve
ENTRYPOINT ["recserve"]
CMD ["--help"]
