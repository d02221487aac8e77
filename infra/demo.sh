#!/usr/bin/env bash
# Loads the demo tenant through zaasctl, as an operator would: tenant `demo` (Pro), its admin, and
# one API key with the query scope. Idempotent: what exists is reused; the key is kept in
# .zaas/demo-key.env (shown once by the API, so kept here for the demo only).
# Usage: demo.sh CONTROL_URL; prints shell assignments for stack.env.
source "$(dirname "$0")/common.sh"
# shellcheck disable=SC1090
. "$ZAAS_SECRETS"
url="$1"
# zaasctl SUBCOMMAND… with the URL (and, for `as`, a token) after it, where ArgumentParser wants options.
ctl() { "${ZAAS_BIN:-$ZAAS_ROOT/.build/release}/zaasctl" "$@" --url "$url"; }
as() { local token="$1"; shift; ctl "$@" --token "$token"; }
json_field() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval("d"+sys.argv[1]))' "$1"; }

admin_email="demo-admin@zaas.local"
admin_password="${ZAAS_DEMO_ADMIN_PASSWORD:-}"
if [ -z "$admin_password" ]; then
    admin_password="demo-$(random_secret | cut -c1-20)"
    echo "ZAAS_DEMO_ADMIN_PASSWORD=$admin_password" >>"$ZAAS_SECRETS"
fi

ops=$(ZAAS_PASSWORD="$ZAAS_OPERATOR_PASSWORD" ctl login --email "$ZAAS_OPERATOR_EMAIL")
tenant_id=$(as "$ops" tenants list --json | python3 -c '
import json, sys
for t in json.load(sys.stdin)["items"]:
    if t["slug"] == "demo": print(t["id"])')
if [ -z "$tenant_id" ]; then
    tenant_id=$(as "$ops" tenants create --name "Demo Lab" --slug demo --tier pro --json | json_field '["id"]')
fi
if ! admin=$(ZAAS_PASSWORD="$admin_password" ctl login --email "$admin_email" 2>/dev/null); then
    ZAAS_NEW_PASSWORD="$admin_password" as "$ops" admins create --tenant "$tenant_id" \
        --email "$admin_email" --role admin >/dev/null
    admin=$(ZAAS_PASSWORD="$admin_password" ctl login --email "$admin_email")
fi
as "$ops" logout

key_file="$ZAAS_HOME/demo-key.env"
key=""
if [ -f "$key_file" ]; then
    # shellcheck disable=SC1090
    . "$key_file"
    key_id=$(cut -d_ -f3 <<<"${ZAAS_DEMO_API_KEY:-}")
    if as "$admin" keys list --status active | grep -q " $key_id "; then key="$ZAAS_DEMO_API_KEY"; fi
fi
if [ -z "$key" ]; then
    key=$(as "$admin" keys create --name "demo" --scope query --scope stats:read)
    (umask 077; echo "ZAAS_DEMO_API_KEY=$key" >"$key_file")
fi
as "$admin" logout

cat <<ENV
ZAAS_DEMO_TENANT_ID=$tenant_id
ZAAS_DEMO_ADMIN_EMAIL=$admin_email
ZAAS_DEMO_ADMIN_PASSWORD=$admin_password
ZAAS_DEMO_API_KEY=$key
ENV
