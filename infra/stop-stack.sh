#!/usr/bin/env bash
# Stops the control plane and data-plane nodes gracefully (SIGTERM, then SIGKILL after 10 s).
source "$(dirname "$0")/common.sh"
RUN="$ZAAS_RUN_DIR"
[ -d "$RUN" ] || exit 0
for pidfile in "$RUN"/*.pid; do
    [ -e "$pidfile" ] || continue
    pid="$(cat "$pidfile")"
    if kill -0 "$pid" 2>/dev/null; then
        log "stopping $(basename "$pidfile" .pid) (pid $pid)"
        kill -TERM "$pid"
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
    fi
    rm -f "$pidfile"
done
