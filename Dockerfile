# syntax=docker/dockerfile:1
# Multi-stage image: the builder makes a virtual environment with CPU-only PyTorch (never the
# multi-GB CUDA build) and the project; the runtime stage copies it and runs as a non-root user.

FROM python:3.11-slim AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# CPU wheel first, so the project's "torch>=2.4" requirement is already satisfied.
RUN pip install --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY twin ./twin
COPY connectors ./connectors
COPY app ./app
COPY plants ./plants
# The postgres extra: psycopg, for a state store in PostgreSQL (compose.yaml, TWIN_STATE_URL).
RUN pip install ".[postgres]"

FROM python:3.11-slim AS runtime
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
