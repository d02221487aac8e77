#!/usr/bin/env bash
# Operations checks on a running stack, as smoke.sh leaves it (its environment: the stack's ports,
# ZAAS_STACK_ENV, and ZAAS_ALERT_FILE where the test webhook writes what Alertmanager sends):
#   1. nginx is the entry: queries and the admin API through it, request ids carried to the
#      nodes, its own refusals as problem documents, the internal API not reachable;
#   2. Prometheus scrapes every target;
#   3. alerts raised on the running stack reach the webhook: rate-limit refusals, model backend
#      failures, the 5xx error rate and Redis down;
#   4. every Grafana panel's query is valid PromQL that returns data;
#   5. a node killed under load through nginx fails no more requests than were in flight on it.
source "$(dirname "$0")/common.sh"
# shellcheck disable=SC1090
. "$ZAAS_STACK_ENV"
# shellcheck disable=SC1090
. "$ZAAS_SECRETS"
fail() { log "ops: FAILED: $*"; exit 1; }
PROMETHEUS_URL="http://127.0.0.1:$ZAAS_PROMETHEUS_PORT"
query_body='{"question": "What is the principle of stationary action?"}'
ask() { # key, body, then curl's options
    local key=$1 body=$2
    shift 2
    curl -sS --max-time 60 -H "Authorization: Bearer $key" -H 'Content-Type: application/json' -d "$body" "$@" \
        "$PUBLIC_URL/api/v1/query"
}

# --- 1. nginx ---------------------------------------------------------------------------------
headers="$ZAAS_RUN_DIR/ops-query.headers"
answer=$(ask "$DEMO_ENTERPRISE_KEY" "$query_body" -D "$headers" -H 'X-Request-ID: ops-check-1')
grep -q '"citations":\[{' <<<"$answer" || fail "no answer through nginx: $answer"
grep -qi '^x-request-id: ops-check-1' "$headers" || fail "the request id did not come back: $(cat "$headers")"
[ "$(grep -ci '^x-request-id:' "$headers")" = 1 ] || fail "X-Request-ID is set twice: $(cat "$headers")"
grep -q '"request_id":"ops-check-1"' "$ZAAS_LOG_DIR/nginx-access.log" || fail "nginx did not log the request id"
# The node got the id: its problem document for a bad query carries it.
problem=$(ask "$DEMO_ENTERPRISE_KEY" '{"question": ""}' -H 'X-Request-ID: ops-check-2')
grep -q '"request_id":"ops-check-2"' <<<"$problem" || fail "the node did not get the request id: $problem"
# A malformed id is replaced by nginx's own, the same on the node and in nginx's log.
problem=$(ask "$DEMO_ENTERPRISE_KEY" '{"question": ""}' -D "$headers" -H 'X-Request-ID: bad id"{')
generated=$(sed -nE 's/^[Xx]-[Rr]equest-[Ii][Dd]: ([0-9a-f]{32})\r?$/\1/p' "$headers")
[ -n "$generated" ] || fail "no nginx request id for a malformed one: $(cat "$headers")"
grep -q "\"request_id\":\"$generated\"" <<<"$problem" || fail "the node did not get nginx's request id: $problem"
grep -q "\"request_id\":\"$generated\"" "$ZAAS_LOG_DIR/nginx-access.log" || fail "nginx logged another id"
# The internal API and unknown paths are not public; a body over the limit is refused by nginx.
for path in /internal/v1/config /nope /metrics; do
    reply=$(curl -sS -w '\n%{http_code} %{content_type}' "$PUBLIC_URL$path")
    [ "$(tail -n 1 <<<"$reply")" = "404 application/problem+json" ] || fail "$path through nginx: $reply"
    grep -q '"type":"https://zaas.dev/problems/not-found"' <<<"$reply" || fail "$path: $reply"
done
big=$(head -c $((17 << 20)) /dev/zero | tr '\0' 'a' | curl -sS -w '\n%{http_code}' -H "Authorization: Bearer $DEMO_ENTERPRISE_KEY" \
    -H 'Content-Type: application/json' --data-binary @- "$PUBLIC_URL/api/v1/canon/update")
[ "$(tail -n 1 <<<"$big")" = 413 ] && grep -q 'payload-too-large' <<<"$big" || fail "an oversized body: $big"
# The admin API through nginx: the operator signs in.
signin=$(curl -sS -X POST "$PUBLIC_URL/admin/v1/sessions" -H 'content-type: application/json' \
    -d "{\"email\": \"$ZAAS_OPERATOR_EMAIL\", \"password\": \"$ZAAS_OPERATOR_PASSWORD\"}")
ops_token=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["token"])' "$signin") \
    || fail "operator sign-in through nginx: $signin"

# --- 2. Prometheus scrapes everything ---------------------------------------------------------
targets_up() {
    curl -fsS "$PROMETHEUS_URL/api/v1/targets?state=active" | python3 -c '
import json, sys
targets = json.load(sys.stdin)["data"]["activeTargets"]
jobs = {t["labels"]["job"] for t in targets}
down = [(t["labels"]["job"], t["scrapeUrl"], t["lastError"]) for t in targets if t["health"] != "up"]
need = {"zaas-control", "zaas-data", "nginx", "redis", "postgres", "alertmanager", "prometheus"}
sys.exit(0 if need <= jobs and not down else 1)'
}
for _ in $(seq 1 60); do targets_up && break; sleep 0.5; done
targets_up || fail "Prometheus targets not all up: $(curl -sS "$PROMETHEUS_URL/api/v1/targets?state=active")"

# --- 3. Alerts reach the webhook --------------------------------------------------------------
# Prometheus counts a counter's increase from its first sample: each failure is made once, then
# again after a scrape, so the series exist before the burst that raises the alert.
scraped() { # PromQL, count: whether Prometheus has that many series for it
    curl -fsS "$PROMETHEUS_URL/api/v1/query" --data-urlencode "query=count($1)" | python3 -c '
import json, sys
result = json.load(sys.stdin)["data"]["result"]
sys.exit(0 if result and int(float(result[0]["value"][1])) >= int(sys.argv[1]) else 1)' "$2"
}
wait_scraped() { # PromQL, count
    for _ in $(seq 1 60); do scraped "$1" "$2" && return 0; sleep 0.5; done
    fail "Prometheus never scraped $2 series of $1"
}
# The Free demo key (10 an hour) asked on each node until that node refuses it.
for url in $DATA_URLS; do
    for _ in $(seq 1 15); do
        code=$(curl -sS --max-time 60 -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $DEMO_FREE_KEY" \
            -H 'Content-Type: application/json' -d "$query_body" "$url/api/v1/query")
        [ "$code" = 429 ] && continue 2
    done
    fail "$url never refused the Free key"
done
# A local backend nobody listens on, first in its class (the cheapest, then by name): every call
# fails (connection refused) and falls back. Each question its own, from the demo's evaluation
# set, with a context no earlier run used: no cache answers it (a query with context never meets
# the semantic cache) instead of a model.
remove_dead() { # the dead backend, if a run left it
    local id
    id=$(curl -fsS -H "Authorization: Bearer $ops_token" "$CONTROL_URL/admin/v1/models" | python3 -c '
import json, sys
print(next((m["id"] for m in json.load(sys.stdin)["items"] if m["name"] == "aaa-ops-dead-local"), ""))')
    [ -z "$id" ] || curl -fsS -o /dev/null -X DELETE -H "Authorization: Bearer $ops_token" "$CONTROL_URL/admin/v1/models/$id"
}
remove_dead
dead=$(curl -sS -X POST "$CONTROL_URL/admin/v1/models" -H "Authorization: Bearer $ops_token" \
    -H 'content-type: application/json' \
    -d '{"name": "aaa-ops-dead-local", "model_class": "local", "base_url": "http://127.0.0.1:9/v1", "credential_name": null, "timeout_ms": 1000}')
grep -q '"id"' <<<"$dead" || fail "adding a model: $dead"
# The Enterprise demo tenant without the large-local class meanwhile: its fallback (the AirLLM
# sidecar, seconds a token) would make each failure take minutes. Put back below.
policy() { # json
    curl -fsS -o /dev/null -X PUT "$CONTROL_URL/admin/v1/tenants/$DEMO_ENTERPRISE_TENANT_ID/quota-policy" \
        -H "Authorization: Bearer $ops_token" -H 'content-type: application/json' -d "$1"
}
policy '{"model_classes": ["local", "cloud"]}' || fail "setting the Enterprise demo tenant's policy"
# Whatever happens next, the stack is left as it was: Redis up, the policy and catalog as before.
trap 'bash "$(dirname "$0")/start-services.sh" >/dev/null 2>&1; remove_dead; policy "{}"' EXIT
mapfile -t questions < <(python3 -c '
import json, sys
for item in json.load(open(sys.argv[1]))[10:40]:
    print(json.dumps({"question": item["question"], "model_preference": "local", "context": sys.argv[2]}))' \
    "$ZAAS_ROOT/infra/demo-canon-eval.json" "ops check $(date +%s%N)")
asked=0
ask_dead() { # url, question number: its reply
    curl -sS --max-time 60 -H "Authorization: Bearer $DEMO_ENTERPRISE_KEY" -H 'Content-Type: application/json' \
        -d "${questions[$2]}" "$1/api/v1/query"
}
for url in $DATA_URLS; do
    for _ in $(seq 1 10); do
        reply=$(ask_dead "$url" "$asked")
        asked=$((asked + 1))
        grep -q '"fallback_reason":"connect_failed"' <<<"$reply" && continue 2
        sleep 0.5
    done
    fail "$url never tried the dead local backend: $reply"
done
node_count=$(wc -w <<<"$DATA_URLS")
wait_scraped 'zaas_model_fallbacks_total{model="aaa-ops-dead-local"}' "$node_count"
wait_scraped 'zaas_tenant_queries_total{tenant="demo-free",code="429"}' "$node_count"
for number in $(seq 1 30); do ask "$DEMO_FREE_KEY" "$query_body" -o /dev/null; done
# Four more each: a node opens the backend's circuit after five failures in a row.
for _ in $(seq 1 4); do
    for url in $DATA_URLS; do
        ask_dead "$url" "$asked" >/dev/null
        asked=$((asked + 1))
    done
done

# Redis stopped: asynchronous queries are refused with 503 (async-unavailable), enough of them for
# the error rate, until both alerts have reached the webhook.
REDISCLI_AUTH="$ZAAS_REDIS_PASSWORD" redis-cli -h 127.0.0.1 -p "$ZAAS_REDIS_PORT" shutdown >/dev/null 2>&1 || true
seen() { # alertname
    [ -f "$ZAAS_ALERT_FILE" ] && python3 - "$ZAAS_ALERT_FILE" "$1" <<'PY'
import json, sys
names = set()
for line in open(sys.argv[1]):
    for alert in json.loads(line)["alerts"]:
        if alert["status"] == "firing":
            names.add(alert["labels"]["alertname"])
sys.exit(0 if sys.argv[2] in names else 1)
PY
}
wanted="ZaaSRateLimitRefusalsSpike ZaaSModelBackendFailures ZaaSHighErrorRate ZaaSRedisDown"
deadline=$(( $(date +%s) + 240 ))
while :; do
    missing=""
    for name in $wanted; do seen "$name" || missing+=" $name"; done
    [ -z "$missing" ] && break
    [ "$(date +%s)" -lt "$deadline" ] || fail "alerts not at the webhook:$missing (got: $(head -c 2000 "$ZAAS_ALERT_FILE" 2>/dev/null))"
    ask "$DEMO_ENTERPRISE_KEY" '{"question": "What is the principle of stationary action?", "async": true}' -o /dev/null
    sleep 0.3
done
bash "$(dirname "$0")/start-services.sh" >/dev/null 2>&1 || fail "Redis did not start again"
remove_dead || fail "removing the dead model"
policy '{}' || fail "putting the Enterprise demo tenant's policy back"
trap - EXIT
log "ops: alerts reached the webhook: $wanted"

# --- 4. Dashboard queries ---------------------------------------------------------------------
python3 "$(dirname "$0")/ops/dashboards.py" "$PROMETHEUS_URL" "$ZAAS_ROOT"/infra/grafana/dashboards/*.json \
    || fail "dashboard queries"

# --- 5. A node killed under load through nginx --------------------------------------------------
# The load runs at hundreds of queries a second: on a fast machine, or after an earlier run within
# the hour (Redis keeps its windows), it would reach the Enterprise tenant's 10,000 an hour and
# measure the rate limit instead of the failover. The tenant's limits are raised for the load, on
# every node before it starts, and put back after.
policy '{"queries_per_hour": 10000000, "tenant_queries_per_hour": 100000000}' \
    || fail "raising the Enterprise demo tenant's limits"
trap 'policy "{}"' EXIT
for url in $DATA_URLS; do
    for _ in $(seq 1 100); do
        curl -sS -H "Authorization: Bearer $DEMO_ENTERPRISE_KEY" "$url/api/v1/key" \
            | grep -q '"tenant_queries_per_hour":100000000' && continue 2
        sleep 0.1
    done
    fail "$url did not get the raised limits"
done
victim=$(cat "$ZAAS_RUN_DIR/data-2.pid")
summary=$(python3 "$(dirname "$0")/ops/load.py" "$PUBLIC_URL" "$DEMO_ENTERPRISE_KEY" "$victim") \
    || fail "node killed under load: $summary"
policy '{}' || fail "putting the Enterprise demo tenant's limits back"
trap - EXIT
log "ops: node killed under load through nginx: $summary"
log "ops: ok"
