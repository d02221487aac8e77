#!/usr/bin/env bash
# Starts PostgreSQL 15 and Redis 7 on loopback with their data under .zaas/. Idempotent.
source "$(dirname "$0")/common.sh"

mkdir -p "$ZAAS_HOME/logs" "$ZAAS_REDIS_DIR"

# Secrets are generated once per checkout and kept under .zaas/ (never committed).
if [ ! -f "$ZAAS_SECRETS" ]; then
    umask 077
    cat > "$ZAAS_SECRETS" <<SECRETS
ZAAS_DB_OWNER_PASSWORD=$(random_secret)
ZAAS_DB_APP_PASSWORD=$(random_secret)
ZAAS_REDIS_PASSWORD=$(random_secret)
ZAAS_NODE_TOKEN=$(random_secret)
ZAAS_KEY_PEPPER=$(random_secret)
ZAAS_OPERATOR_EMAIL=operator@zaas.local
ZAAS_OPERATOR_PASSWORD=$(random_secret | cut -c1-24)
SECRETS
    umask 022
fi
# The Ed25519 key pair that signs configuration for data-plane nodes (added to older secrets files too).
if ! grep -q '^ZAAS_CONFIG_SIGNING_KEY=' "$ZAAS_SECRETS"; then
    der_file=$(mktemp)
    openssl genpkey -algorithm ed25519 -outform DER -out "$der_file"
    # The last 32 bytes of the PKCS#8 and SPKI encodings are the raw seed and public key.
    seed=$(tail -c 32 "$der_file" | od -An -tx1 | tr -d ' \n')
    public=$(openssl pkey -inform DER -in "$der_file" -pubout -outform DER | tail -c 32 | od -An -tx1 | tr -d ' \n')
    rm -f "$der_file"
    printf 'ZAAS_CONFIG_SIGNING_KEY=%s\nZAAS_CONFIG_PUBLIC_KEY=%s\n' "$seed" "$public" >>"$ZAAS_SECRETS"
fi
# shellcheck disable=SC1090
. "$ZAAS_SECRETS"

# --- PostgreSQL -------------------------------------------------------------------------------
if [ "$(id -u)" -eq 0 ] && [ ! -e "$ZAAS_PG_LINK" ]; then
    if runuser -u "$ZAAS_PG_USER" -- test -x "$ZAAS_HOME"; then
        mkdir -p "$ZAAS_PG_LINK"
    else
        elsewhere="/var/lib/zaas/$(printf '%s' "$ZAAS_HOME" | sha256sum | cut -c1-16)"
        log "$ZAAS_PG_USER cannot reach $ZAAS_HOME; keeping PostgreSQL's files in $elsewhere"
        if [ -e "$elsewhere" ]; then
            # Left by an earlier checkout at this path whose .zaas (and so its passwords) is gone.
            log "discarding the orphaned PostgreSQL files in $elsewhere"
            rm -rf "$elsewhere"
        fi
        mkdir -p "$elsewhere"
        ln -sfn "$elsewhere" "$ZAAS_PG_LINK"
    fi
    resolve_pg_paths
    chown "$ZAAS_PG_USER" "$ZAAS_PG_ROOT"
    chmod 700 "$ZAAS_PG_ROOT"
fi
as_pg mkdir -p "$ZAAS_PG_RUN"
if [ ! -f "$ZAAS_PG_DATA/PG_VERSION" ]; then
    log "initialising PostgreSQL cluster in $ZAAS_PG_DATA"
    as_pg "$ZAAS_PG_BIN/initdb" -D "$ZAAS_PG_DATA" -U "$ZAAS_PG_USER" --encoding=UTF8 --locale=C.UTF-8 \
        --auth-local=peer --auth-host=scram-sha-256 >/dev/null
    cat <<CONF | as_pg tee -a "$ZAAS_PG_DATA/postgresql.conf" >/dev/null
# --- ZaaS local stack ---
listen_addresses = '127.0.0.1'
port = $ZAAS_PG_PORT
unix_socket_directories = '$ZAAS_PG_RUN'
max_connections = 400
shared_buffers = 256MB
fsync = on
password_encryption = scram-sha-256
CONF
fi
if pg_running; then
    log "PostgreSQL already running on 127.0.0.1:$ZAAS_PG_PORT"
    # A test run that was killed may have left fsync off (infra/test.sh turns it off while it runs).
    if [ -n "$(pg_super -c "SELECT 1 FROM pg_file_settings WHERE name = 'fsync' AND sourcefile LIKE '%postgresql.auto.conf'")" ]; then
        pg_super -c "ALTER SYSTEM RESET fsync" -c "SELECT pg_reload_conf()" >/dev/null
        log "PostgreSQL: fsync back on (a test run had turned it off)"
    fi
else
    log "starting PostgreSQL on 127.0.0.1:$ZAAS_PG_PORT"
    as_pg "$ZAAS_PG_BIN/pg_ctl" -D "$ZAAS_PG_DATA" -l "$ZAAS_PG_LOG" -w -t 60 start >/dev/null
fi

# Roles and database: an owner that runs migrations, an application role that owns nothing and
# has no BYPASSRLS. CREATEDB lets the owner make the throwaway databases the tests use.
pg_super <<SQL
DO \$\$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$ZAAS_DB_OWNER') THEN
        CREATE ROLE $ZAAS_DB_OWNER LOGIN CREATEDB;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$ZAAS_DB_APP') THEN
        CREATE ROLE $ZAAS_DB_APP LOGIN;
    END IF;
END
\$\$;
ALTER ROLE $ZAAS_DB_OWNER WITH LOGIN CREATEDB NOSUPERUSER NOBYPASSRLS PASSWORD '$ZAAS_DB_OWNER_PASSWORD';
ALTER ROLE $ZAAS_DB_APP WITH LOGIN NOCREATEDB NOCREATEROLE NOSUPERUSER NOBYPASSRLS PASSWORD '$ZAAS_DB_APP_PASSWORD';
SQL
if [ -z "$(pg_super -c "SELECT 1 FROM pg_database WHERE datname = '$ZAAS_DB_NAME'")" ]; then
    pg_super -c "CREATE DATABASE $ZAAS_DB_NAME OWNER $ZAAS_DB_OWNER"
fi
pg_super -d "$ZAAS_DB_NAME" -c "REVOKE ALL ON SCHEMA public FROM PUBLIC; ALTER SCHEMA public OWNER TO $ZAAS_DB_OWNER;"

# --- Redis ------------------------------------------------------------------------------------
if redis_running; then
    log "Redis already running on 127.0.0.1:$ZAAS_REDIS_PORT"
else
    log "starting Redis on 127.0.0.1:$ZAAS_REDIS_PORT (AOF on)"
    # The password goes through a config file, not the command line, so `ps` does not show it.
    umask 077
    cat > "$ZAAS_REDIS_DIR/redis.conf" <<CONF
bind 127.0.0.1
port $ZAAS_REDIS_PORT
protected-mode yes
requirepass $ZAAS_REDIS_PASSWORD
dir $ZAAS_REDIS_DIR
appendonly yes
appendfsync everysec
daemonize yes
pidfile $ZAAS_REDIS_PID
logfile $ZAAS_REDIS_LOG
save ""
CONF
    umask 022
    redis-server "$ZAAS_REDIS_DIR/redis.conf"
    for _ in $(seq 1 100); do redis_running && break; sleep 0.1; done
    redis_running || { log "Redis did not start; see $ZAAS_REDIS_LOG"; exit 1; }
fi
