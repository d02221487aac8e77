#!/usr/bin/env bash
# Checks, before anything starts, that the ports the stack will listen on are free or held by this
# checkout's own processes (a restart takes them over). For a port another process holds, says
# which (pid and command line, when this user may see them) and how to free or move it, and fails.
#
#   ports.sh services   PostgreSQL and Redis
#   ports.sh stack      everything `make run` starts
#   ports.sh smoke      everything `make test` starts: the services, and the stack of smoke.sh
source "$(dirname "$0")/common.sh"
mode="${1:-stack}"
if [ "$mode" = smoke ]; then
    # shellcheck source=infra/smoke.env
    . "$(dirname "$0")/smoke.env"
fi

# Pids of this checkout's processes: PostgreSQL's postmaster, Redis, and every pid file under .zaas.
own_pids() {
    [ -f "$ZAAS_PG_DATA/postmaster.pid" ] && as_pg head -n 1 "$ZAAS_PG_DATA/postmaster.pid" 2>/dev/null
    local file
    for file in "$ZAAS_REDIS_PID" "$ZAAS_RUN_DIR"/*.pid; do
        [ -f "$file" ] && head -n 1 "$file"
    done
    return 0
}

# Whether pid (or its parent: nginx's workers, PostgreSQL's backends) is one of ours.
is_own() { # pid, own pids...
    local pid=$1
    shift
    local parent
    parent=$(awk '{print $4}' "/proc/$pid/stat" 2>/dev/null || true)
    local own
    for own in "$@"; do
        [ "$pid" = "$own" ] || [ "$parent" = "$own" ] && return 0
    done
    return 1
}

# The pids listening on a TCP port (empty when none, or when they belong to a user we cannot see).
listeners() { # port
    ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u
}

listening() { # port
    [ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]
}

check() { # port name variable
    local port=$1 name=$2 variable=$3
    listening "$port" || return 0
    local pids pid
    pids=$(listeners "$port")
    if [ -z "$pids" ]; then
        log "port $port ($name) is taken by a process of another user; free it, or move ours: $variable=<port> make ..."
        return 1
    fi
    mapfile -t own < <(own_pids)
    for pid in $pids; do
        if ! is_own "$pid" "${own[@]}"; then
            local command
            command=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | cut -c1-160)
            log "port $port ($name) is taken by pid $pid: ${command:-unknown}"
            log "  free it (stop that process: kill $pid, or 'make stop' in the checkout that started it)"
            log "  or move ours: $variable=<free port> make ..."
            return 1
        fi
    done
}

command -v ss >/dev/null || { log "ss (iproute2) is missing: make install"; exit 1; }

failed=0
check "$ZAAS_PG_PORT" PostgreSQL ZAAS_PG_PORT || failed=1
check "$ZAAS_REDIS_PORT" Redis ZAAS_REDIS_PORT || failed=1
if [ "$mode" != services ]; then
    check "$ZAAS_CONTROL_PORT" "control plane" ZAAS_CONTROL_PORT || failed=1
    set -- $ZAAS_DATA_PORTS
    for port in "$@"; do
        check "$port" "data-plane node" ZAAS_DATA_PORTS || failed=1
        check "$((port + 1000))" "data-plane node metrics" ZAAS_DATA_PORTS || failed=1
    done
    check "$((ZAAS_CONTROL_PORT + 1000))" "control-plane metrics" ZAAS_CONTROL_PORT || failed=1
    check "$ZAAS_PUBLIC_PORT" "nginx, the public entry" ZAAS_PUBLIC_PORT || failed=1
    check "$ZAAS_NGINX_STATUS_PORT" "nginx status" ZAAS_NGINX_STATUS_PORT || failed=1
    check "$ZAAS_PROMETHEUS_PORT" Prometheus ZAAS_PROMETHEUS_PORT || failed=1
    check "$ZAAS_ALERTMANAGER_PORT" Alertmanager ZAAS_ALERTMANAGER_PORT || failed=1
    check "$ZAAS_NGINX_EXPORTER_PORT" "nginx exporter" ZAAS_NGINX_EXPORTER_PORT || failed=1
    check "$ZAAS_REDIS_EXPORTER_PORT" "Redis exporter" ZAAS_REDIS_EXPORTER_PORT || failed=1
    check "$ZAAS_POSTGRES_EXPORTER_PORT" "PostgreSQL exporter" ZAAS_POSTGRES_EXPORTER_PORT || failed=1
    [ "$mode" != smoke ] || check "$ZAAS_ALERT_WEBHOOK_PORT" "the test's alert webhook" ZAAS_ALERT_WEBHOOK_PORT || failed=1
    [ "${ZAAS_LLM:-on}" = off ] || check "${ZAAS_LLM_PORT:-8090}" "local model" ZAAS_LLM_PORT || failed=1
    [ "${ZAAS_AIRLLM:-off}" != on ] || check "${ZAAS_AIRLLM_PORT:-8095}" "AirLLM sidecar" ZAAS_AIRLLM_PORT || failed=1
fi
exit $failed
