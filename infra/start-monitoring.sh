#!/usr/bin/env bash
# Starts the monitoring stack on loopback (docs/deployment.md): Debian's exporters for nginx, Redis
# and PostgreSQL, Prometheus scraping them, the control plane and every node with the alert rules
# of infra/prometheus/rules, and Alertmanager sending alerts to ZAAS_ALERT_WEBHOOK_URL. Restarts
# what runs. Pid files are with the planes', so stop-stack.sh stops them too.
source "$(dirname "$0")/common.sh"
# shellcheck disable=SC1090
. "$ZAAS_SECRETS"
RUN="$ZAAS_RUN_DIR"
LOGS="${ZAAS_LOG_DIR:-$ZAAS_HOME/logs}"
CONF="$RUN/monitoring"
mkdir -p "$RUN" "$LOGS" "$CONF"
# How often Prometheus scrapes and evaluates the rules (15 s is usual in production).
SCRAPE_INTERVAL="${ZAAS_SCRAPE_INTERVAL:-5s}"

for tool in prometheus promtool prometheus-alertmanager prometheus-nginx-exporter prometheus-redis-exporter \
    prometheus-postgres-exporter; do
    command -v "$tool" >/dev/null || { log "$tool is missing: make install"; exit 1; }
done

stop_one() { # name
    local pidfile="$RUN/$1.pid"
    [ -f "$pidfile" ] || return 0
    kill -TERM "$(cat "$pidfile")" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$(cat "$pidfile")" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$(cat "$pidfile")" 2>/dev/null || true
    rm -f "$pidfile"
}

start_one() { # name, then the command
    local name=$1
    shift
    stop_one "$name"
    "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
    echo $! >"$RUN/$name.pid"
}

render() { # template output NAME=VALUE...
    python3 - "$@" <<'PY'
import sys
template, output, *pairs = sys.argv[1:]
text = open(template).read()
for pair in pairs:
    name, value = pair.split("=", 1)
    text = text.replace("@@" + name + "@@", value)
assert "@@" not in text, "a placeholder is left in " + output
open(output, "w").write(text)
PY
}

# Alertmanager: every alert to the webhook, when there is one.
receiver=discard
webhook=""
if [ -n "${ZAAS_ALERT_WEBHOOK_URL:-}" ]; then
    receiver=webhook
    webhook="  - name: webhook
    webhook_configs:
      - url: '$ZAAS_ALERT_WEBHOOK_URL'
        send_resolved: true"
fi
render "$ZAAS_ROOT/infra/prometheus/alertmanager.yml.template" "$CONF/alertmanager.yml" \
    "RECEIVER=$receiver" "WEBHOOK=$webhook" "GROUP_WAIT=${ZAAS_ALERT_GROUP_WAIT:-10s}"
# Prometheus: the planes, the exporters, Alertmanager and itself, with the alert rules.
targets=""
index=0
for port in $ZAAS_DATA_PORTS; do
    index=$((index + 1))
    targets+="      - targets: ['127.0.0.1:$((port + 1000))']
        labels: {node: data-$index}
"
done
render "$ZAAS_ROOT/infra/prometheus/prometheus.yml.template" "$CONF/prometheus.yml" \
    "SCRAPE_INTERVAL=$SCRAPE_INTERVAL" "DEPLOYMENT=${ZAAS_DEPLOYMENT:-local}" \
    "RULES=$ZAAS_ROOT/infra/prometheus/rules" "ALERTMANAGER_PORT=$ZAAS_ALERTMANAGER_PORT" \
    "CONTROL_METRICS_PORT=$((ZAAS_CONTROL_PORT + 1000))" "DATA_TARGETS=${targets%$'\n'}" \
    "NGINX_EXPORTER_PORT=$ZAAS_NGINX_EXPORTER_PORT" "REDIS_EXPORTER_PORT=$ZAAS_REDIS_EXPORTER_PORT" \
    "POSTGRES_EXPORTER_PORT=$ZAAS_POSTGRES_EXPORTER_PORT" "PROMETHEUS_PORT=$ZAAS_PROMETHEUS_PORT"
promtool check config "$CONF/prometheus.yml" >/dev/null || { log "the rendered Prometheus configuration is invalid"; exit 1; }
[ "${1:-}" = render-only ] && exit 0

# PostgreSQL's exporter signs in as a role that may read the statistics views and nothing else.
if ! grep -q '^ZAAS_DB_MONITOR_PASSWORD=' "$ZAAS_SECRETS"; then
    printf 'ZAAS_DB_MONITOR_PASSWORD=%s\n' "$(random_secret)" >>"$ZAAS_SECRETS"
    # shellcheck disable=SC1090
    . "$ZAAS_SECRETS"
fi
pg_super <<SQL >/dev/null
DO \$\$ BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'zaas_monitor') THEN
        CREATE ROLE zaas_monitor LOGIN;
    END IF;
END \$\$;
ALTER ROLE zaas_monitor PASSWORD '$ZAAS_DB_MONITOR_PASSWORD';
GRANT pg_monitor TO zaas_monitor;
SQL

start_one nginx-exporter prometheus-nginx-exporter \
    -nginx.scrape-uri "http://127.0.0.1:$ZAAS_NGINX_STATUS_PORT/nginx_status" \
    -web.listen-address "127.0.0.1:$ZAAS_NGINX_EXPORTER_PORT"
start_one redis-exporter env REDIS_PASSWORD="$ZAAS_REDIS_PASSWORD" prometheus-redis-exporter \
    -redis.addr "redis://127.0.0.1:$ZAAS_REDIS_PORT" \
    -web.listen-address "127.0.0.1:$ZAAS_REDIS_EXPORTER_PORT"
start_one postgres-exporter \
    env DATA_SOURCE_NAME="postgresql://zaas_monitor:$ZAAS_DB_MONITOR_PASSWORD@127.0.0.1:$ZAAS_PG_PORT/$ZAAS_DB_NAME?sslmode=disable" \
    prometheus-postgres-exporter --web.listen-address="127.0.0.1:$ZAAS_POSTGRES_EXPORTER_PORT"


mkdir -p "$RUN/alertmanager-data"
start_one alertmanager prometheus-alertmanager --config.file="$CONF/alertmanager.yml" \
    --storage.path="$RUN/alertmanager-data" --web.listen-address="127.0.0.1:$ZAAS_ALERTMANAGER_PORT" \
    --cluster.listen-address=

mkdir -p "$RUN/prometheus-data"
start_one prometheus prometheus --config.file="$CONF/prometheus.yml" \
    --storage.tsdb.path="$RUN/prometheus-data" --storage.tsdb.retention.time=15d \
    --web.listen-address="127.0.0.1:$ZAAS_PROMETHEUS_PORT" --web.enable-lifecycle

wait_http "http://127.0.0.1:$ZAAS_ALERTMANAGER_PORT/-/ready" alertmanager "$LOGS/alertmanager.log"
wait_http "http://127.0.0.1:$ZAAS_PROMETHEUS_PORT/-/ready" prometheus "$LOGS/prometheus.log"
