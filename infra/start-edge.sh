#!/usr/bin/env bash
# Starts nginx as the stack's single public entry (ZAAS_PUBLIC_HOST:ZAAS_PUBLIC_PORT) in front of
# every data-plane node (ZAAS_DATA_PORTS) and the control plane's admin API, from
# infra/nginx/zaas.conf.template, with its status page on loopback for the exporter. Restarts it
# when it runs. Its pid file is with the planes', so stop-stack.sh stops it too.
source "$(dirname "$0")/common.sh"
RUN="$ZAAS_RUN_DIR"
LOGS="${ZAAS_LOG_DIR:-$ZAAS_HOME/logs}"
PREFIX="$RUN/nginx"
mkdir -p "$RUN" "$LOGS" "$PREFIX"

NGINX="${ZAAS_NGINX_BIN:-/usr/sbin/nginx}"
[ -x "$NGINX" ] || { log "nginx is missing: make install"; exit 1; }

if [ -f "$RUN/nginx.pid" ]; then
    kill -TERM "$(cat "$RUN/nginx.pid")" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$(cat "$RUN/nginx.pid")" 2>/dev/null || break; sleep 0.1; done
    rm -f "$RUN/nginx.pid"
fi

# As root, the workers run as root too: the checkout (and so nginx's temporary folders) may sit
# where no other user can reach, as in CI. A production image runs nginx unprivileged.
user_line=""
[ "$(id -u)" -eq 0 ] && user_line="user root root;"
nodes=""
for port in $ZAAS_DATA_PORTS; do nodes+="127.0.0.1:$port "; done
ZAAS_NGINX_NODES="$nodes" ZAAS_NGINX_CONTROL="127.0.0.1:$ZAAS_CONTROL_PORT" \
    ZAAS_NGINX_LISTEN="$ZAAS_PUBLIC_HOST:$ZAAS_PUBLIC_PORT" ZAAS_NGINX_STATUS_LISTEN="127.0.0.1:$ZAAS_NGINX_STATUS_PORT" \
    ZAAS_NGINX_PREFIX="$PREFIX" ZAAS_NGINX_ACCESS_LOG="$LOGS/nginx-access.log" \
    ZAAS_NGINX_ERROR_LOG="$LOGS/nginx-error.log" ZAAS_NGINX_USER="$user_line" \
    sh "$ZAAS_ROOT/infra/nginx/render.sh" "$ZAAS_ROOT/infra/nginx/zaas.conf.template" "$PREFIX/nginx.conf"
"$NGINX" -t -q -p "$PREFIX" -c "$PREFIX/nginx.conf" -e "$LOGS/nginx-error.log" || {
    log "the rendered nginx configuration ($PREFIX/nginx.conf) does not pass nginx -t"; exit 1; }
"$NGINX" -p "$PREFIX" -c "$PREFIX/nginx.conf" -e "$LOGS/nginx-error.log" >>"$LOGS/nginx.log" 2>&1 </dev/null &
echo $! >"$RUN/nginx.pid"
wait_http "http://127.0.0.1:$ZAAS_NGINX_STATUS_PORT/nginx_status" nginx "$LOGS/nginx-error.log"
