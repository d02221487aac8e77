# Shared settings for the infra scripts. Sourced, not run.
# Everything lives under .zaas/ in the repository (git-ignored); ports are project-specific.
set -euo pipefail

ZAAS_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ZAAS_HOME="${ZAAS_HOME:-$ZAAS_ROOT/.zaas}"

ZAAS_PG_PORT="${ZAAS_PG_PORT:-54320}"
ZAAS_REDIS_PORT="${ZAAS_REDIS_PORT:-63790}"
ZAAS_CONTROL_PORT="${ZAAS_CONTROL_PORT:-8400}"
ZAAS_DATA_PORTS="${ZAAS_DATA_PORTS:-8401 8402}"

ZAAS_PG_BIN="${ZAAS_PG_BIN:-/usr/lib/postgresql/15/bin}"
# PostgreSQL's files live in .zaas/postgres. When the checkout sits where the unprivileged
# PostgreSQL user cannot reach (a clone under /root, say), they live under /var/lib/zaas and
# .zaas/postgres is a symlink to them.
ZAAS_PG_LINK="$ZAAS_HOME/postgres"
# Paths the PostgreSQL user uses must not pass through the symlink (it cannot traverse the checkout).
resolve_pg_paths() {
    ZAAS_PG_ROOT="$ZAAS_PG_LINK"
    [ -L "$ZAAS_PG_LINK" ] && ZAAS_PG_ROOT="$(readlink -f "$ZAAS_PG_LINK")"
    ZAAS_PG_DATA="$ZAAS_PG_ROOT/data"
    ZAAS_PG_RUN="$ZAAS_PG_ROOT/run"
    ZAAS_PG_LOG="$ZAAS_PG_ROOT/postgres.log"
}
resolve_pg_paths
ZAAS_REDIS_DIR="$ZAAS_HOME/redis"
ZAAS_REDIS_PID="$ZAAS_HOME/redis/redis.pid"
ZAAS_REDIS_LOG="$ZAAS_HOME/logs/redis.log"
ZAAS_SECRETS="$ZAAS_HOME/secrets.env"
# Pid files and logs of the planes that start-stack.sh runs.
ZAAS_RUN_DIR="${ZAAS_RUN_DIR:-$ZAAS_HOME/run}"

# PostgreSQL refuses to run as root; Debian's package creates this user.
ZAAS_PG_USER="${ZAAS_PG_USER:-postgres}"

ZAAS_DB_NAME="${ZAAS_DB_NAME:-zaas}"
ZAAS_DB_OWNER="${ZAAS_DB_OWNER:-zaas_owner}"
ZAAS_DB_APP="${ZAAS_DB_APP:-zaas_app}"

log() { printf '[zaas] %s\n' "$*" >&2; }

# Runs a command as the PostgreSQL user (or as is, when we already are that user).
as_pg() {
    if [ "$(id -un)" = "$ZAAS_PG_USER" ]; then "$@"; else runuser -u "$ZAAS_PG_USER" -- "$@"; fi
}

# Superuser psql over the private Unix socket (peer authentication).
pg_super() {
    as_pg "$ZAAS_PG_BIN/psql" -h "$ZAAS_PG_RUN" -p "$ZAAS_PG_PORT" -U "$ZAAS_PG_USER" -d postgres \
        -v ON_ERROR_STOP=1 -qAt "$@"
}

pg_running() {
    [ -f "$ZAAS_PG_DATA/postmaster.pid" ] && as_pg "$ZAAS_PG_BIN/pg_ctl" -D "$ZAAS_PG_DATA" status >/dev/null 2>&1
}

redis_running() {
    [ -f "$ZAAS_SECRETS" ] || return 1
    # shellcheck disable=SC1090
    . "$ZAAS_SECRETS"
    REDISCLI_AUTH="$ZAAS_REDIS_PASSWORD" redis-cli -h 127.0.0.1 -p "$ZAAS_REDIS_PORT" ping 2>/dev/null | grep -q PONG
}

# wait_http URL NAME LOG: waits up to 30 s for URL to answer 2xx; otherwise says so with the
# last lines of LOG and fails.
wait_http() {
    local _
    for _ in $(seq 1 150); do
        curl -fs -o /dev/null "$1" && return 0
        sleep 0.2
    done
    log "$2 did not come up at $1; last log lines:"
    tail -n 20 "$3" >&2 || true
    return 1
}

random_secret() { head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n'; }

# venv_install DIR REQUIREMENT...: a Python virtual environment at DIR holding the requirements,
# made once (in DIR.partial, moved into place when complete, so an interrupted install is redone).
# Its scripts' first lines name the interpreter by the folder they were installed in: rewritten.
venv_install() {
    local dir=$1
    shift
    [ -x "$dir/bin/python3" ] && [ -f "$dir/.complete" ] && return 0
    mkdir -p "$(dirname "$dir")"
    rm -rf "$dir.partial" "$dir"
    python3 -m venv "$dir.partial"
    "$dir.partial/bin/pip" install --quiet --disable-pip-version-check "$@" >&2
    local script
    for script in "$dir.partial"/bin/*; do
        if [ -f "$script" ] && head -n 1 "$script" | grep -qa "^#!$dir.partial/"; then
            sed -i "1s|^#!$dir.partial/|#!$dir/|" "$script"
        fi
    done
    touch "$dir.partial/.complete"
    mv "$dir.partial" "$dir"
}

# The public entry (nginx) and the monitoring stack that `make run` starts (docs/deployment.md).
# ZAAS_PUBLIC_HOST=0.0.0.0 opens the entry to the network; everything else stays on loopback.
ZAAS_PUBLIC_HOST="${ZAAS_PUBLIC_HOST:-127.0.0.1}"
ZAAS_PUBLIC_PORT="${ZAAS_PUBLIC_PORT:-8080}"
ZAAS_NGINX_STATUS_PORT="${ZAAS_NGINX_STATUS_PORT:-8081}"
ZAAS_PROMETHEUS_PORT="${ZAAS_PROMETHEUS_PORT:-9490}"
ZAAS_ALERTMANAGER_PORT="${ZAAS_ALERTMANAGER_PORT:-9493}"
ZAAS_NGINX_EXPORTER_PORT="${ZAAS_NGINX_EXPORTER_PORT:-9413}"
ZAAS_REDIS_EXPORTER_PORT="${ZAAS_REDIS_EXPORTER_PORT:-9421}"
ZAAS_POSTGRES_EXPORTER_PORT="${ZAAS_POSTGRES_EXPORTER_PORT:-9487}"
