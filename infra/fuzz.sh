#!/usr/bin/env bash
# Fuzzes both planes against docs/openapi.yaml with schemathesis: a stack of the debug build on a
# fresh database of its own (separate ports and run folder; a `make run` stack is untouched),
# then one schemathesis run per kind of caller (operator, tenant admin, API key, node), each with
# a fixed seed and a bounded number of examples per operation. Fails on any 5xx and on any
# response the contract does not describe (status, content type, body schema, headers).
source "$(dirname "$0")/common.sh"
# shellcheck disable=SC1090
. "$ZAAS_SECRETS"

SCHEMATHESIS_VERSION=4.32.5
# Installed once per machine, outside the checkout, keyed by version.
TOOLS="${ZAAS_TOOLS_DIR:-/var/cache/zaas}"
ST="$TOOLS/schemathesis-$SCHEMATHESIS_VERSION"
if [ ! -f "$ST/.complete" ]; then
    log "installing schemathesis $SCHEMATHESIS_VERSION into $ST"
    venv_install "$ST" "schemathesis==$SCHEMATHESIS_VERSION"
fi

export ZAAS_BIN="${ZAAS_BIN:-$ZAAS_ROOT/.build/debug}"
export ZAAS_DB_NAME=zaas_fuzz ZAAS_CONTROL_PORT=28400 ZAAS_DATA_PORTS="28401"
export ZAAS_RUN_DIR="$ZAAS_HOME/fuzz" ZAAS_LOG_DIR="$ZAAS_HOME/fuzz" ZAAS_STACK_ENV="$ZAAS_HOME/fuzz/stack.env"
export ZAAS_DEMO_KEY_FILE="$ZAAS_HOME/fuzz/demo-key.env"
# Thousands of generated requests: the extractive answerer serves them (smoke.sh covers the model).
export ZAAS_LLM=off
mkdir -p "$ZAAS_RUN_DIR"
rm -f "$ZAAS_DEMO_KEY_FILE"
trap 'bash "$(dirname "$0")/stop-stack.sh" >/dev/null 2>&1 || true' EXIT

# A fresh database each run: what one run's fuzzing left behind never shapes the next.
bash "$(dirname "$0")/stop-stack.sh" >/dev/null 2>&1 || true
# The node's saved configuration too: a fuzzed `config-version` advance leaves it ahead of any
# fresh database, and it would rightly refuse the new one's snapshots as replays.
for port in $ZAAS_DATA_PORTS; do rm -rf "$ZAAS_HOME"/node-state/data-*-"$port"; done
pg_super -c "DROP DATABASE IF EXISTS $ZAAS_DB_NAME"
pg_super -c "CREATE DATABASE $ZAAS_DB_NAME OWNER $ZAAS_DB_OWNER"
pg_super -d "$ZAAS_DB_NAME" -c "REVOKE ALL ON SCHEMA public FROM PUBLIC; ALTER SCHEMA public OWNER TO $ZAAS_DB_OWNER;"
bash "$(dirname "$0")/start-stack.sh" >/dev/null
# shellcheck disable=SC1090
. "$ZAAS_STACK_ENV"
control="http://127.0.0.1:$ZAAS_CONTROL_PORT"
data="http://127.0.0.1:${ZAAS_DATA_PORTS%% *}"

ctl() { "$ZAAS_BIN/zaasctl" "$@" --url "$control"; }
operator=$(ZAAS_PASSWORD="$ZAAS_OPERATOR_PASSWORD" ctl login --email "$ZAAS_OPERATOR_EMAIL")
tenant_admin=$(ZAAS_PASSWORD="$ZAAS_DEMO_ADMIN_PASSWORD" ctl login --email "admin@demo-enterprise.zaas.local")
node_token=$(ctl nodes issue --node-id fuzz-node --token "$operator")

seed="${ZAAS_FUZZ_SEED:-20261202}"
examples="${ZAAS_FUZZ_EXAMPLES:-25}"
report="$ZAAS_RUN_DIR/report"
mkdir -p "$report"
failed=0
# fuzz NAME URL BEARER PATH-REGEX: one schemathesis run over the operations whose path matches.
# Not fuzzed: sign-in and sign-out (a fuzzed sign-out would end the session the run uses).
fuzz() {
    local name="$1" url="$2" bearer="$3" paths="$4"
    log "fuzz: $name ($paths)"
    # Run from the report folder: schemathesis keeps its cache in the working directory.
    if ! (cd "$report" && PYTHONPATH="$ZAAS_ROOT/infra" SCHEMATHESIS_HOOKS=fuzz_hooks "$ST/bin/schemathesis" run "$ZAAS_ROOT/docs/openapi.yaml" --url "$url" \
        --header "Authorization: Bearer $bearer" --include-path-regex "$paths" \
        --exclude-path-regex '^/admin/v1/sessions' \
        --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance \
        --phases examples,coverage,fuzzing --max-examples "$examples" --seed "$seed" --workers 1 \
        --request-timeout 30 --no-shrink --warnings off --suppress-health-check all \
        --report junit --report-dir "$report/$name" >"$report/$name.log" 2>&1); then
        failed=1
        log "fuzz: $name FAILED; the report follows ($report/$name.log)"
        tail -n 80 "$report/$name.log" >&2
    fi
}
fuzz operator "$control" "$operator" '^/admin/v1/(tenants|base-canon|nodes|models|usage/verify|billing)'
fuzz tenant-admin "$control" "$tenant_admin" '^/admin/v1/(keys|admins|canon|audit|usage$|billing/(periods|price-lists)$|tenant$|me$)'
fuzz api-key "$data" "$DEMO_ENTERPRISE_KEY" '^/api/v1/'
fuzz node "$control" "$node_token" '^/internal/v1/'
[ "$failed" -eq 0 ] || { log "fuzz: FAILED"; exit 1; }
log "fuzz: ok (seed $seed, $examples examples per operation)"
