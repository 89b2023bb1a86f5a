# syntax=docker/dockerfile:1
# Multi-stage image: the builder makes a virtual environment with CPU-only PyTorch (never the
# multi-GB CUDA build) and the project; the runtime stage copies it and runs as a non-root user.
# The install order is scripts/setup.sh's: torch 2.13.0 (CPU) first, then the project.
#   docker build -t plant-twin .
#   docker run --rm plant-twin --help
# Build arguments, for mirrors and air-gapped builds:
#   PYTHON_IMAGE     a Python 3.11 image with `python` and venv (default python:3.11-slim)
#   TORCH_INDEX_URL  where the CPU torch wheel comes from (default PyTorch's CPU index)
#   PIP_INDEX_URL    where everything else comes from (default PyPI)
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG PIP_INDEX_URL=https://pypi.org/simple
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# CPU wheel first, so the project's "torch>=2.4" requirement is already satisfied; the torch
# index also serves torch's own dependencies (filelock, sympy, networkx, jinja2, fsspec).
RUN pip install --index-url "$TORCH_INDEX_URL" "torch==2.13.0" \
    && python -c "import torch; assert not torch.version.cuda, torch.version.cuda"
# tep-studio (the Tennessee Eastman simulator) is published only as source, with a C extension
# built through cffi: the builder needs a compiler (python:3.11-slim has none). The runtime stage
# needs no compiler.
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
# One COPY: .dockerignore lets in only pyproject.toml, README.md and the packages twin,
# connectors, app and plants.
COPY . /src
# Not editable (the source folder is not in the runtime stage). The postgres extra: psycopg,
# for a state store in PostgreSQL (compose.yaml, TWIN_STATE_URL). No chromium: only the
# browser tests need it, and they do not run in the image.
RUN pip install --index-url "$PIP_INDEX_URL" "/src[postgres]" \
    && twin --help >/dev/null

FROM ${PYTHON_IMAGE} AS runtime
RUN useradd --create-home --uid 10001 twin \
    && mkdir -p /data && chown twin:twin /data
COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    TWIN_HOME=/data \
    PYTHONUNBUFFERED=1
USER twin
WORKDIR /home/twin
VOLUME ["/data"]
EXPOSE 4840 5020 8501
# The same image runs every process; the default is the control room.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["twin", "health", "--http", "http://127.0.0.1:8501/_stcore/health"]
ENTRYPOINT ["twin"]
CMD ["app", "--host", "0.0.0.0", "--port", "8501"]
