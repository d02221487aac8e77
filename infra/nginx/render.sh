#!/bin/sh
# Renders zaas.conf.template (POSIX sh and sed, so the nginx image can run it at its start):
#   render.sh TEMPLATE OUTPUT
# from the environment: ZAAS_NGINX_NODES (host:port of each data-plane node, space-separated),
# ZAAS_NGINX_CONTROL (host:port of the control plane), ZAAS_NGINX_LISTEN (host:port of the public
# entry), ZAAS_NGINX_STATUS_LISTEN (host:port of the status page), ZAAS_NGINX_PREFIX (pid file and temporary folders),
# ZAAS_NGINX_ACCESS_LOG, ZAAS_NGINX_ERROR_LOG, and ZAAS_NGINX_USER (a `user` line, or empty).
set -eu
template=$1
output=$2
nodes=""
for node in $ZAAS_NGINX_NODES; do
    nodes="$nodes        server $node max_fails=1 fail_timeout=5s;\\
"
done
listen_host=${ZAAS_NGINX_LISTEN%:*}
listen_port=${ZAAS_NGINX_LISTEN##*:}
sed -e "s|@@USER@@|${ZAAS_NGINX_USER:-}|" \
    -e "s|@@PREFIX@@|$ZAAS_NGINX_PREFIX|g" \
    -e "s|@@ACCESS_LOG@@|$ZAAS_NGINX_ACCESS_LOG|" \
    -e "s|@@ERROR_LOG@@|$ZAAS_NGINX_ERROR_LOG|" \
    -e "s|@@CONTROL@@|$ZAAS_NGINX_CONTROL|" \
    -e "s|@@PUBLIC_HOST@@|$listen_host|" \
    -e "s|@@PUBLIC_PORT@@|$listen_port|" \
    -e "s|@@STATUS_LISTEN@@|$ZAAS_NGINX_STATUS_LISTEN|" \
    -e "s|^@@NODES@@\$|$nodes|" \
    "$template" >"$output.partial"
if grep -q '@@' "$output.partial"; then
    echo "render.sh: a placeholder is left in $output" >&2
    exit 1
fi
mv "$output.partial" "$output"
