#!/usr/bin/env bash
# End-to-end check of the real executables, as `make run` starts them: both planes come up
# healthy on their own ports, log JSON lines, report a control-plane outage as `degraded`,
# catch up when it returns, and exit cleanly on SIGTERM; then the operations checks
# (ops-test.sh: nginx, Prometheus, alerts, dashboards, a node lost under load). Uses the debug build that `make test`
# just made, separate ports and a separate run folder, so a running `make run` stack is untouched.
source "$(dirname "$0")/common.sh"
export ZAAS_BIN="${ZAAS_BIN:-$ZAAS_ROOT/.build/debug}"
# shellcheck source=infra/smoke.env
. "$(dirname "$0")/smoke.env"
trap 'bash "$(dirname "$0")/stop-stack.sh" >/dev/null 2>&1 || true' EXIT

fail() { log "smoke: FAILED: $*"; exit 1; }
status_of() { curl -s -o /dev/null -w '%{http_code}' "$1"; }

# Prometheus's and Alertmanager's state from an earlier run (its series, the alerts it already
# sent) would decide what this run's alerts do: each run starts without them.
rm -rf "$ZAAS_RUN_DIR/prometheus-data" "$ZAAS_RUN_DIR/alertmanager-data"
bash "$(dirname "$0")/start-stack.sh"
. "$ZAAS_STACK_ENV"
# Answers cached by an earlier run on this machine (never in CI) would keep the models from being
# asked: the stack's cached answers go (Redis and PostgreSQL's copy; `make run` shares them).
# shellcheck disable=SC1090
. "$ZAAS_SECRETS"
REDISCLI_AUTH="$ZAAS_REDIS_PASSWORD" redis-cli -h 127.0.0.1 -p "$ZAAS_REDIS_PORT" --scan --pattern 'zaas:{t:*}:[qs]c:*' |
    xargs -r env REDISCLI_AUTH="$ZAAS_REDIS_PASSWORD" redis-cli -h 127.0.0.1 -p "$ZAAS_REDIS_PORT" del >/dev/null
pg_super -d "$ZAAS_DB_NAME" -c "DELETE FROM answer_cache" >/dev/null
# The webhook Alertmanager sends alerts to (ops-test.sh reads what it received); stop-stack.sh
# stops it with the rest.
rm -f "$ZAAS_ALERT_FILE"
python3 "$(dirname "$0")/ops/webhook.py" "$ZAAS_ALERT_WEBHOOK_PORT" "$ZAAS_ALERT_FILE" >>"$ZAAS_RUN_DIR/webhook.log" 2>&1 &
echo $! >"$ZAAS_RUN_DIR/webhook.pid"

health=$(curl -fsS "http://127.0.0.1:18401/api/v1/health")
python3 - "$health" <<'PY' || fail "data-plane health not ok: $health"
import json, sys
h = json.loads(sys.argv[1])
assert h["status"] == "ok", h
assert h["checks"]["redis"]["status"] == "up", h
assert h["checks"]["control_plane"]["status"] == "up", h
assert h["checks"]["config"]["status"] == "up", h
assert h["config_version"] >= 0 and h["node_id"] == "data-1", h
PY
[ "$(status_of "$CONTROL_URL/healthz")" = 200 ] || fail "control plane /healthz"
[ "$(status_of "$CONTROL_URL/nope")" = 404 ] || fail "unknown route is not 404"
# Metrics on their own loopback listener (HTTP port + 1000), never on the public port.
metrics=$(curl -fsS "http://127.0.0.1:19400/metrics")
grep -q '^hb_requests' <<<"$metrics" || fail "no hb_requests in /metrics"
[ "$(status_of "$CONTROL_URL/metrics")" = 404 ] || fail "the control plane's public port serves /metrics"
python3 - "$ZAAS_LOG_DIR/control.log" <<'PY' || fail "control log is not JSON lines"
import json, sys
lines = [l for l in open(sys.argv[1]) if l.strip()]
assert lines, "empty log"
for line in lines:
    json.loads(line)
PY

# zaasctl never prints a secret from the environment (as an option's default in --help or usage).
for command in "keys list" "login" "admins create"; do
    help=$(ZAAS_TOKEN=zsess_smoke_secret ZAAS_PASSWORD=smoke-password-secret ZAAS_NEW_PASSWORD=smoke-new-secret \
        "$ZAAS_BIN/zaasctl" $command --help 2>&1 || true)
    grep -q -- "--token" <<<"$help" || fail "zaasctl $command --help shows no options: $help"
    ! grep -qE 'zsess_smoke_secret|smoke-password-secret|smoke-new-secret' <<<"$help" \
        || fail "zaasctl $command --help prints a secret from the environment"
done

# The bootstrap operator from the stack's secrets can sign in.
signin=$(curl -sS -X POST "$CONTROL_URL/admin/v1/sessions" -H 'content-type: application/json' \
    -d "{\"email\": \"$ZAAS_OPERATOR_EMAIL\", \"password\": \"$ZAAS_OPERATOR_PASSWORD\"}")
grep -q '"token":"zsess_' <<<"$signin" || fail "operator sign-in: $signin"

# The demo tenants ask the demo canon; only Enterprise may update its canon.
# (The Pro key: 100 queries an hour, and the key is kept from run to run.)
answer=$(curl -sS -D "$ZAAS_RUN_DIR/query.headers" -H "Authorization: Bearer $ZAAS_DEMO_API_KEY" \
    -H 'Content-Type: application/json' \
    -d '{"question": "What does Noether'"'"'s theorem say?", "model_preference": "local"}' http://127.0.0.1:18402/api/v1/query)
grep -qi '^ratelimit-limit: 100' "$ZAAS_RUN_DIR/query.headers" || fail "no RateLimit-Limit: 100 on a Pro query"
grep -qi '^ratelimit-remaining: [0-9]' "$ZAAS_RUN_DIR/query.headers" || fail "no RateLimit-Remaining on a query"
python3 - "$answer" <<'PY' || fail "query answer: $answer"
import json, sys
import re
a = json.loads(sys.argv[1])
# The real local model (llama-server, infra/start-llm.sh) answered, and the filter checked it:
# every sentence served cites a passage that is listed.
assert a["model_used"] == "smollm2-135m-instruct", a
assert a["route"]["class"] == "local" and "fallback_reason" not in a, a
assert a["citations"] and 0 < a["confidence"] <= 1, a
assert isinstance(a["filter"]["changed"], bool), a
for sentence in re.split(r"(?<=[.!?])\s+", a["answer"].strip()):
    numbers = [int(n) for n in re.findall(r"\[(\d+)\]", sentence)]
    assert numbers and all(1 <= n <= len(a["citations"]) for n in numbers), (sentence, a)
PY
# The large-local class: the tiny model through AirLLM's layer-by-layer inference in the sidecar,
# checked by the filter like any model's answer.
large=$(curl -sS -H "Authorization: Bearer $ZAAS_DEMO_API_KEY" -H 'Content-Type: application/json' \
    -d '{"question": "What is configuration space?", "model_preference": "large-local"}' \
    http://127.0.0.1:18401/api/v1/query)
python3 - "$large" <<'PY' || fail "large-local answer: $large"
import json, re, sys
a = json.loads(sys.argv[1])
assert a["model_used"] == "zaas-tiny-llama", a
assert a["route"]["class"] == "large-local" and "fallback_reason" not in a, a
assert a["citations"][0]["id"] == "def.configuration-space", a
assert "generalized coordinates" in a["answer"], a
for sentence in re.split(r"(?<=[.!?])\s+", a["answer"].strip()):
    numbers = [int(n) for n in re.findall(r"\[(\d+)\]", sentence)]
    assert numbers and all(1 <= n <= len(a["citations"]) for n in numbers), (sentence, a)
PY
curl -fsS "http://127.0.0.1:$ZAAS_AIRLLM_PORT/metrics" | grep -q '^airllm_requests_total{outcome="ok"} [1-9]' \
    || fail "the AirLLM sidecar did not count the answer"
# The same question streamed (server-sent events from llama-server through the filter), asked by
# another tenant so no cache answers: sentences arrive as delta events, then the answer's JSON.
stream=$(curl -sS -N -H "Authorization: Bearer $DEMO_ENTERPRISE_KEY" -H 'Accept: text/event-stream' \
    -H 'Content-Type: application/json' \
    -d '{"question": "What does Noether'"'"'s theorem say?", "model_preference": "local"}' http://127.0.0.1:18401/api/v1/query)
python3 - "$stream" <<'PY' || fail "streamed answer: $stream"
import json, sys
events = []
for block in sys.argv[1].split("\n\n"):
    lines = [l for l in block.split("\n") if l and not l.startswith(":")]
    if lines:
        name = next(l[6:].strip() for l in lines if l.startswith("event:"))
        data = "\n".join(l[5:].lstrip() for l in lines if l.startswith("data:"))
        events.append((name, json.loads(data)))
names = [name for name, _ in events]
assert names[-1] == "answer" and "error" not in names, names
a = events[-1][1]
assert a["model_used"] == "smollm2-135m-instruct", a
if a["cache_hit"]:
    # A run folder kept from an earlier run (not CI's): the answer is cached, one event.
    assert names == ["answer"], names
else:
    deltas = [d["text"] for name, d in events if name == "delta"]
    assert deltas and "".join(deltas) == a["answer"], (deltas, a)
    assert sum(len(d["citations"]) for name, d in events if name == "delta") == len(a["citations"]), events
    assert a["timings_ms"]["model"] > 0 and a["timings_ms"]["total"] >= a["timings_ms"]["model"], a
PY
update='{"upsert": [{"id": "lab.smoke", "kind": "narrative", "title": "Smoke", "body": "Smoke test.", "status": "Narrative"}], "publish": false}'
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $DEMO_FREE_KEY" -H 'Content-Type: application/json' \
    -d "$update" http://127.0.0.1:18401/api/v1/canon/update)" = 403 ] || fail "free tenant canon update not 403"

# The demo key works on every node once its configuration arrives (well within a second).
key_status() { curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $ZAAS_DEMO_API_KEY" "$1/api/v1/key"; }
for url in $DATA_URLS; do
    for _ in $(seq 1 50); do [ "$(key_status "$url")" = 200 ] && break; sleep 0.1; done
    [ "$(key_status "$url")" = 200 ] || fail "demo key refused by $url"
done
node_metrics=$(curl -fsS "http://127.0.0.1:19401/metrics")
[ "$(status_of "http://127.0.0.1:18401/metrics")" = 404 ] || fail "a node's public port serves /metrics"
! grep -qE 'tenant="[0-9a-fA-F]{8}-' <<<"$node_metrics" || fail "a tenant id is a metric label value"
for metric in zaas_config_version zaas_control_plane_up zaas_config_staleness_seconds; do
    grep -q "^$metric" <<<"$node_metrics" || fail "no $metric in the node's /metrics"
done
bad=$(curl -s -H "Authorization: Bearer zaas_live_aaaaaaaaaaaaaaaaaaaa_$(printf '0%.0s' $(seq 1 64))" "http://127.0.0.1:18401/api/v1/key")
grep -q 'invalid-api-key' <<<"$bad" || fail "unknown key not refused: $bad"

# The audit trail: the queries above reached PostgreSQL through the control plane, and a signed
# export of them verifies with zaasctl; a byte changed afterwards does not.
# shellcheck disable=SC1090
. "$ZAAS_SECRETS"
ops_token=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["token"])' "$signin")
for _ in $(seq 1 100); do
    events=$(curl -fsS -H "Authorization: Bearer $ops_token" "$CONTROL_URL/admin/v1/audit/events?outcome=answered&limit=5")
    grep -qE '"outcome": ?"answered"' <<<"$events" && break
    sleep 0.1
done
grep -qE '"outcome": ?"answered"' <<<"$events" || fail "no answered query in the audit trail: $events"
audit_tenant=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["items"][0]["tenant_id"])' "$events")
export_dir="$ZAAS_RUN_DIR/audit-export"
rm -rf "$export_dir"
"$ZAAS_BIN/zaasctl" audit export --url "$CONTROL_URL" --token "$ops_token" --tenant "$audit_tenant" \
    --from "$(date -u -d '-1 hour' +%Y-%m-%dT%H:%M:%SZ)" --to "$(date -u -d '+1 minute' +%Y-%m-%dT%H:%M:%SZ)" \
    --out "$export_dir" --public-key "$ZAAS_CONFIG_PUBLIC_KEY" >"$ZAAS_RUN_DIR/audit-export.log" 2>&1 \
    || fail "zaasctl audit export: $(cat "$ZAAS_RUN_DIR/audit-export.log")"
grep -q 'verified' "$ZAAS_RUN_DIR/audit-export.log" || fail "the export was not verified"
[ "$(gzip -dc "$export_dir/events.ndjson.gz" | grep -cE '"outcome": ?"answered"')" -gt 0 ] || fail "the export holds no answered query"
printf 'x' >>"$export_dir/events.csv"
if "$ZAAS_BIN/zaasctl" audit verify "$export_dir" --public-key "$ZAAS_CONFIG_PUBLIC_KEY" >/dev/null 2>&1; then
    fail "a tampered export verified"
fi

# Usage: the same tenant's answered queries are in its rollups (zaasctl usage), and the rollups
# of the last two hours agree with the events (zaasctl usage verify exits 1 otherwise).
usage=$("$ZAAS_BIN/zaasctl" usage --url "$CONTROL_URL" --token "$ops_token" --tenant "$audit_tenant" --json) \
    || fail "zaasctl usage: $usage"
python3 -c 'import json, sys; assert json.loads(sys.argv[1])["totals"]["answered"] >= 1' "$usage" \
    || fail "no answered query in the usage report: $usage"
"$ZAAS_BIN/zaasctl" usage verify --url "$CONTROL_URL" --token "$ops_token" \
    --from "$(date -u -d '-2 hour' +%Y-%m-%dT%H:00:00Z)" --to "$(date -u -d '+1 hour' +%Y-%m-%dT%H:00:00Z)" \
    >"$ZAAS_RUN_DIR/usage-verify.log" 2>&1 || fail "zaasctl usage verify: $(cat "$ZAAS_RUN_DIR/usage-verify.log")"

# Billing: the published price lists are there (zaasctl billing prices).
"$ZAAS_BIN/zaasctl" billing prices --url "$CONTROL_URL" --token "$ops_token" >"$ZAAS_RUN_DIR/billing-prices.log" 2>&1 \
    || fail "zaasctl billing prices: $(cat "$ZAAS_RUN_DIR/billing-prices.log")"
grep -q 'tier enterprise' "$ZAAS_RUN_DIR/billing-prices.log" || fail "no Enterprise price list: $(cat "$ZAAS_RUN_DIR/billing-prices.log")"

# Control plane down: nodes keep serving and say degraded; back up: nodes see it without restart.
kill -TERM "$(cat "$ZAAS_RUN_DIR/control.pid")"
for _ in $(seq 1 50); do kill -0 "$(cat "$ZAAS_RUN_DIR/control.pid")" 2>/dev/null || break; sleep 0.1; done
kill -0 "$(cat "$ZAAS_RUN_DIR/control.pid")" 2>/dev/null && fail "control plane ignored SIGTERM"
sleep 1.5
degraded=$(curl -sS "http://127.0.0.1:18402/api/v1/health")
grep -q '"status":"degraded"' <<<"$degraded" || fail "node not degraded without control plane: $degraded"
[ "$(key_status http://127.0.0.1:18402)" = 200 ] || fail "demo key refused while the control plane is down"

bash "$(dirname "$0")/start-stack.sh" control >/dev/null 2>&1 || fail "control plane restart"
for _ in $(seq 1 100); do
    recovered=$(curl -fsS "http://127.0.0.1:18402/api/v1/health")
    grep -q '"status":"ok"' <<<"$recovered" && break
    sleep 0.1
done
grep -q '"status":"ok"' <<<"$recovered" || fail "node did not recover: $recovered"

# nginx, Prometheus, the alerts and the dashboards on this running stack; last, a node killed
# under load through nginx.
bash "$(dirname "$0")/ops-test.sh" || fail "operations checks (ops-test.sh)"
log "smoke: ok"
