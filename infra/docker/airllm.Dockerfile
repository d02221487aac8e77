# syntax=docker/dockerfile:1
# The AirLLM sidecar, the large-local class (docs/airllm.md, docs/deployment.md "Containers").
# Build from the repository root:
#   docker build -f infra/docker/airllm.Dockerfile -t zaas-airllm .
# The model is not in the image: mount its folder (a Hugging Face checkpoint) at /models/model, or
# set ZAAS_AIRLLM_MODEL_PATH. AirLLM writes its per-layer shards to /var/lib/airllm (a volume
# sized for the model). This image is for processors; a CUDA image would start from NVIDIA's.

FROM python:3.11-slim-bookworm AS build
COPY infra/airllm/requirements.txt /requirements.txt
RUN python3 -m venv /opt/airllm \
    && /opt/airllm/bin/pip install --no-cache-dir --disable-pip-version-check -r /requirements.txt \
    && /opt/airllm/bin/python -c 'import airllm, torch, fastapi, uvicorn'

FROM python:3.11-slim-bookworm
RUN useradd --system --uid 10001 --home-dir /var/lib/airllm --shell /usr/sbin/nologin airllm \
    && mkdir -p /var/lib/airllm /models \
    && chown 10001:10001 /var/lib/airllm
COPY --from=build /opt/airllm /opt/airllm
COPY infra/airllm/server.py /opt/zaas/server.py
ENV ZAAS_AIRLLM_HOST=0.0.0.0 \
    ZAAS_AIRLLM_PORT=8095 \
    ZAAS_AIRLLM_MODEL_PATH=/models/model \
    ZAAS_AIRLLM_SHARDS_DIR=/var/lib/airllm/shards \
    HF_HOME=/var/lib/airllm/huggingface
VOLUME ["/var/lib/airllm"]
USER 10001:10001
EXPOSE 8095
HEALTHCHECK --interval=15s --timeout=5s --start-period=300s --retries=3 \
    CMD ["/opt/airllm/bin/python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8095/health', timeout=4)"]
ENTRYPOINT ["/opt/airllm/bin/python", "/opt/zaas/server.py"]
