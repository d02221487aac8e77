# syntax=docker/dockerfile:1
# nginx as the public entry in front of the nodes (docs/deployment.md), unprivileged. Build from
# the repository root:  docker build -f infra/docker/nginx.Dockerfile -t zaas-nginx .
# At start it renders infra/nginx/zaas.conf.template from the environment (render.sh): the nodes
# (ZAAS_NGINX_NODES, host:port each), the control plane (ZAAS_NGINX_CONTROL).
FROM nginxinc/nginx-unprivileged:1.26-bookworm
COPY infra/nginx/zaas.conf.template /etc/zaas/zaas.conf.template
COPY --chmod=755 infra/nginx/render.sh /etc/zaas/render.sh
ENV ZAAS_NGINX_NODES="data-1:8401 data-2:8401" \
    ZAAS_NGINX_CONTROL="control:8400" \
    ZAAS_NGINX_LISTEN="0.0.0.0:8080" \
    ZAAS_NGINX_STATUS_LISTEN=0.0.0.0:8081 \
    ZAAS_NGINX_PREFIX=/tmp/nginx \
    ZAAS_NGINX_ACCESS_LOG=/dev/stdout \
    ZAAS_NGINX_ERROR_LOG=/dev/stderr
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
    CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8081/nginx_status"]
ENTRYPOINT ["/bin/sh", "-c", "mkdir -p \"$ZAAS_NGINX_PREFIX\" && /etc/zaas/render.sh /etc/zaas/zaas.conf.template \"$ZAAS_NGINX_PREFIX/nginx.conf\" && exec nginx -p \"$ZAAS_NGINX_PREFIX\" -c \"$ZAAS_NGINX_PREFIX/nginx.conf\" -e /dev/stderr"]
