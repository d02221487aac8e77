#!/usr/bin/env bash
# Starts (or restarts, so a new build is picked up) the local model, the control plane and the
# data-plane nodes from the release build, waits until they are healthy, puts nginx in front and
# the monitoring stack beside them, and writes .zaas/stack.env.
# `start-stack.sh control` starts only the control plane, leaving running nodes alone.
source "$(dirname "$0")/common.sh"
# shellcheck disable=SC1090
. "$ZAAS_SECRETS"

BIN="${ZAAS_BIN:-$ZAAS_ROOT/.build/release}"
RUN="$ZAAS_RUN_DIR"
LOGS="${ZAAS_LOG_DIR:-$ZAAS_HOME/logs}"
STACK_ENV="${ZAAS_STACK_ENV:-$ZAAS_HOME/stack.env}"
mkdir -p "$RUN" "$LOGS"

only="${1:-all}"
[ "$only" = all ] && bash "$(dirname "$0")/stop-stack.sh"
# The local model (llama-server; built once per machine, several minutes the first time).
[ "$only" = all ] && { bash "$(dirname "$0")/start-llm.sh" || exit 1; }
# The large-local class (the AirLLM sidecar), when ZAAS_AIRLLM=on (docs/airllm.md).
[ "$only" = all ] && { bash "$(dirname "$0")/start-airllm.sh" || exit 1; }

start() { # name, then env assignments, then the binary
    local name="$1"; shift
    env "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
    echo $! >"$RUN/$name.pid"
}

start control \
    ZAAS_HTTP_PORT="$ZAAS_CONTROL_PORT" \
    ZAAS_POSTGRES_PORT="$ZAAS_PG_PORT" ZAAS_POSTGRES_DATABASE="$ZAAS_DB_NAME" \
    ZAAS_POSTGRES_USER="$ZAAS_DB_APP" ZAAS_POSTGRES_PASSWORD="$ZAAS_DB_APP_PASSWORD" \
    ZAAS_POSTGRES_OWNER_USER="$ZAAS_DB_OWNER" ZAAS_POSTGRES_OWNER_PASSWORD="$ZAAS_DB_OWNER_PASSWORD" \
    ZAAS_KEYS_PEPPER="$ZAAS_KEY_PEPPER" \
    ZAAS_CONFIG_SIGNING_KEY="$ZAAS_CONFIG_SIGNING_KEY" \
    ZAAS_BOOTSTRAP_OPERATOR_EMAIL="$ZAAS_OPERATOR_EMAIL" ZAAS_BOOTSTRAP_OPERATOR_PASSWORD="$ZAAS_OPERATOR_PASSWORD" \
    ZAAS_EMBEDDINGS_MODEL_DIR="$ZAAS_HOME/models/all-MiniLM-L6-v2" \
    ZAAS_HTTP_TRUSTED_PROXIES=127.0.0.1 \
    "$BIN/zaas-control"
wait_http "http://127.0.0.1:$ZAAS_CONTROL_PORT/healthz" control "$LOGS/control.log"
[ "$only" = control ] && exit 0

# Each node gets a credential of its own, issued by the operator; a restart issues a fresh one and
# revokes the node's old ones (--replace), so no token outlives the process it was given to.
control_url="http://127.0.0.1:$ZAAS_CONTROL_PORT"
ctl() { "$BIN/zaasctl" "$@" --url "$control_url"; }
ops=$(ZAAS_PASSWORD="$ZAAS_OPERATOR_PASSWORD" ctl login --email "$ZAAS_OPERATOR_EMAIL") || {
    log "the bootstrap operator could not sign in to issue node credentials"; exit 1; }

data_urls=()
index=0
for port in $ZAAS_DATA_PORTS; do
    index=$((index + 1))
    node_token=$(ctl nodes issue --node-id "data-$index" --replace --token "$ops") || {
        log "issuing a credential for data-$index failed"; exit 1; }
    start "data-$index" \
        ZAAS_HTTP_PORT="$port" ZAAS_NODE_ID="data-$index" \
        ZAAS_REDIS_PORT="$ZAAS_REDIS_PORT" ZAAS_REDIS_PASSWORD="$ZAAS_REDIS_PASSWORD" \
        ZAAS_CONTROL_URL="http://127.0.0.1:$ZAAS_CONTROL_PORT" \
        ZAAS_NODES_TOKEN="$node_token" ZAAS_CONFIG_PUBLIC_KEY="$ZAAS_CONFIG_PUBLIC_KEY" \
        ZAAS_KEYS_PEPPER="$ZAAS_KEY_PEPPER" ZAAS_EMBEDDINGS_MODEL_DIR="$ZAAS_HOME/models/all-MiniLM-L6-v2" \
        ZAAS_NODE_STATE_DIR="$ZAAS_HOME/node-state/data-$index-$port" \
        "$BIN/zaas-data"
    data_urls+=("http://127.0.0.1:$port")
done
index=0
for url in "${data_urls[@]}"; do
    index=$((index + 1))
    wait_http "$url/api/v1/health" "data-$index" "$LOGS/data-$index.log"
done

demo=$(bash "$(dirname "$0")/demo.sh" "http://127.0.0.1:$ZAAS_CONTROL_PORT") || { log "loading the demo tenant failed"; exit 1; }

# Every node has loaded the published demo canon once it answers the demo question with citations.
# Asked with the Enterprise key: its hourly limit is large, so the polls never use up a demo key.
poll_key=$(sed -n 's/^DEMO_ENTERPRISE_KEY=//p' <<<"$demo")
for url in "${data_urls[@]}"; do
    for _ in $(seq 1 300); do
        if curl -sf -H "Authorization: Bearer $poll_key" -H 'Content-Type: application/json' \
            -d '{"question": "What is the principle of stationary action?"}' "$url/api/v1/query" |
            grep -q '"citations":\[{'; then
            continue 2
        fi
        sleep 0.2
    done
    log "$url did not load the demo canon within 60 s"; exit 1
done

# nginx as the one public entry, then Prometheus, its exporters and Alertmanager (docs/deployment.md).
bash "$(dirname "$0")/start-edge.sh" || exit 1
bash "$(dirname "$0")/start-monitoring.sh" || exit 1

umask 077
cat >"$STACK_ENV" <<ENV
# Written by make run. Source it: . .zaas/stack.env
# The public entry (nginx): queries and the admin API. The planes' own ports are on loopback only.
PUBLIC_URL=http://$( [ "$ZAAS_PUBLIC_HOST" = 0.0.0.0 ] && echo 127.0.0.1 || echo "$ZAAS_PUBLIC_HOST" ):$ZAAS_PUBLIC_PORT
CONTROL_URL=http://127.0.0.1:$ZAAS_CONTROL_PORT
DATA_URLS="${data_urls[*]}"
PROMETHEUS_URL=http://127.0.0.1:$ZAAS_PROMETHEUS_PORT
ALERTMANAGER_URL=http://127.0.0.1:$ZAAS_ALERTMANAGER_PORT
DATABASE_URL=postgres://$ZAAS_DB_APP:$ZAAS_DB_APP_PASSWORD@127.0.0.1:$ZAAS_PG_PORT/$ZAAS_DB_NAME
REDIS_URL=redis://:$ZAAS_REDIS_PASSWORD@127.0.0.1:$ZAAS_REDIS_PORT/0
# The bootstrap operator (POST \$CONTROL_URL/admin/v1/sessions with these to sign in).
ZAAS_OPERATOR_EMAIL=$ZAAS_OPERATOR_EMAIL
ZAAS_OPERATOR_PASSWORD=$ZAAS_OPERATOR_PASSWORD
# The demo tenants (zaasctl made them): demo (Pro; its admin and a query + stats:read key),
# demo-free (Free; DEMO_FREE_KEY) and demo-enterprise (Enterprise; DEMO_ENTERPRISE_KEY with canon:write).
$demo
ENV
