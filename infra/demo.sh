#!/usr/bin/env bash
# Loads the demo through zaasctl, as an operator and tenant admins would:
#   - the demo canon (infra/demo-canon) as the platform base canon, built and published;
#   - tenant `demo` (Pro) with its admin and a query key (ZAAS_DEMO_API_KEY);
#   - tenant `demo-free` (Free) with a query key (DEMO_FREE_KEY);
#   - tenant `demo-enterprise` (Enterprise) with a query + canon:write key (DEMO_ENTERPRISE_KEY).
# Idempotent: what exists is reused; keys are kept in .zaas/demo-key.env (the API shows a key once,
# so it is kept here for the demo only). Usage: demo.sh CONTROL_URL; prints assignments for stack.env.
source "$(dirname "$0")/common.sh"
# shellcheck disable=SC1090
. "$ZAAS_SECRETS"
url="$1"
# zaasctl SUBCOMMAND… with the URL (and, for `as`, a token) after it, where ArgumentParser wants options.
ctl() { "${ZAAS_BIN:-$ZAAS_ROOT/.build/release}/zaasctl" "$@" --url "$url"; }
as() { local token="$1"; shift; ctl "$@" --token "$token"; }
json_field() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval("d"+sys.argv[1]))' "$1"; }

admin_password="${ZAAS_DEMO_ADMIN_PASSWORD:-}"
if [ -z "$admin_password" ]; then
    admin_password="demo-$(random_secret | cut -c1-20)"
    echo "ZAAS_DEMO_ADMIN_PASSWORD=$admin_password" >>"$ZAAS_SECRETS"
fi

ops=$(ZAAS_PASSWORD="$ZAAS_OPERATOR_PASSWORD" ctl login --email "$ZAAS_OPERATOR_EMAIL")

# The base canon: uploaded and published once; a later run reuses the published version.
if ! as "$ops" canon list --base | grep -q "published"; then
    echo "building the demo canon (base canon)…" >&2
    as "$ops" canon upload --base --publish "$ZAAS_ROOT/infra/demo-canon" >/dev/null
fi

# ensure_tenant SLUG NAME TIER: prints the tenant id, creating the tenant and its admin if needed.
ensure_tenant() {
    local slug="$1" name="$2" tier="$3" id email="admin@$1.zaas.local"
    [ "$slug" = demo ] && email="demo-admin@zaas.local"
    id=$(as "$ops" tenants list --json | python3 -c '
import json, sys
for t in json.load(sys.stdin)["items"]:
    if t["slug"] == sys.argv[1]: print(t["id"])' "$slug")
    if [ -z "$id" ]; then
        id=$(as "$ops" tenants create --name "$name" --slug "$slug" --tier "$tier" --json | json_field '["id"]')
    fi
    if ! ZAAS_PASSWORD="$admin_password" ctl login --email "$email" >/dev/null 2>&1; then
        ZAAS_NEW_PASSWORD="$admin_password" as "$ops" admins create --tenant "$id" \
            --email "$email" --role admin >/dev/null
    fi
    echo "$id"
}

key_file="${ZAAS_DEMO_KEY_FILE:-$ZAAS_HOME/demo-key.env}"
# shellcheck disable=SC1090
[ -f "$key_file" ] && . "$key_file"
# ensure_key VARIABLE SLUG SCOPE…: the tenant's demo key in VARIABLE, made anew if the kept one is not active.
ensure_key() {
    local variable="$1" slug="$2" email="admin@$2.zaas.local" admin key="${!1:-}" key_id scopes=()
    shift 2
    [ "$slug" = demo ] && email="demo-admin@zaas.local"
    for scope in "$@"; do scopes+=(--scope "$scope"); done
    admin=$(ZAAS_PASSWORD="$admin_password" ctl login --email "$email")
    key_id=$(cut -d_ -f3 <<<"$key")
    if [ -z "$key" ] || ! as "$admin" keys list --status active | grep -q " $key_id "; then
        key=$(as "$admin" keys create --name "demo" "${scopes[@]}")
    fi
    as "$admin" logout
    printf '%s=%s\n' "$variable" "$key"
}

tenant_id=$(ensure_tenant demo "Demo Lab" pro)
free_id=$(ensure_tenant demo-free "Demo Free" free)
enterprise_id=$(ensure_tenant demo-enterprise "Demo Enterprise" enterprise)
# The local model class: llama-server from infra/start-llm.sh, registered once (every tier may use
# the local class). ZAAS_LLM=off leaves the catalog as it is.
if [ "${ZAAS_LLM:-on}" != off ] && ! as "$ops" models list | grep -q "smollm2-135m-instruct"; then
    as "$ops" models add smollm2-135m-instruct --class local \
        --base-url "http://127.0.0.1:${ZAAS_LLM_PORT:-8090}/v1" --no-credential --timeout-ms 30000 \
        --max-concurrency 2 --context-window 2048 >/dev/null
fi
# The large-local class: the AirLLM sidecar from infra/start-airllm.sh (ZAAS_AIRLLM=on). One
# generation at a time, seconds a token on a processor: one call per node, up to 10 minutes.
if [ "${ZAAS_AIRLLM:-off}" = on ]; then
    airllm_url="http://127.0.0.1:${ZAAS_AIRLLM_PORT:-8095}/v1"
    if as "$ops" models list | grep -q "zaas-tiny-llama"; then
        # Another run (the smoke test's, say) may have pointed it at its own port.
        as "$ops" models update zaas-tiny-llama --base-url "$airllm_url" >/dev/null
    else
        as "$ops" models add zaas-tiny-llama --class large-local --base-url "$airllm_url" --no-credential \
            --timeout-ms 600000 --max-concurrency 1 --context-window 4096 >/dev/null
    fi
fi
as "$ops" logout
keys=$(
    ensure_key ZAAS_DEMO_API_KEY demo query stats:read
    ensure_key DEMO_FREE_KEY demo-free query
    ensure_key DEMO_ENTERPRISE_KEY demo-enterprise query canon:write
)
(umask 077; echo "$keys" >"$key_file")

cat <<ENV
ZAAS_DEMO_TENANT_ID=$tenant_id
ZAAS_DEMO_ADMIN_EMAIL=demo-admin@zaas.local
ZAAS_DEMO_ADMIN_PASSWORD=$admin_password
DEMO_FREE_TENANT_ID=$free_id
DEMO_ENTERPRISE_TENANT_ID=$enterprise_id
DEMO_ENTERPRISE_ADMIN_EMAIL=admin@demo-enterprise.zaas.local
$keys
ENV
