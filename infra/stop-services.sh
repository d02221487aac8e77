#!/usr/bin/env bash
# Stops Redis and PostgreSQL started by start-services.sh. Idempotent.
source "$(dirname "$0")/common.sh"

if [ -f "$ZAAS_REDIS_PID" ] && kill -0 "$(cat "$ZAAS_REDIS_PID")" 2>/dev/null; then
    log "stopping Redis"
    kill "$(cat "$ZAAS_REDIS_PID")"
    for _ in $(seq 1 100); do kill -0 "$(cat "$ZAAS_REDIS_PID" 2>/dev/null)" 2>/dev/null || break; sleep 0.1; done
fi
if pg_running; then
    log "stopping PostgreSQL"
    as_pg "$ZAAS_PG_BIN/pg_ctl" -D "$ZAAS_PG_DATA" -m fast -w stop >/dev/null
fi
