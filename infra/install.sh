#!/usr/bin/env bash
# Installs what the project needs from Debian's packages, only when something is missing.
source "$(dirname "$0")/common.sh"

need=()
[ -x "$ZAAS_PG_BIN/postgres" ] || need+=(postgresql-15 postgresql-client-15)
command -v redis-server >/dev/null || need+=(redis-server)
command -v redis-cli >/dev/null || need+=(redis-tools)
[ -f /usr/include/hiredis/hiredis.h ] || need+=(libhiredis-dev)
[ -f /usr/include/argon2.h ] || need+=(libargon2-dev)
[ -f /usr/include/zlib.h ] || need+=(zlib1g-dev)
command -v pkg-config >/dev/null || need+=(pkg-config)
command -v curl >/dev/null || need+=(curl)
# The local model class (infra/fetch-llm.sh) builds llama.cpp's llama-server once per machine.
command -v cmake >/dev/null || need+=(cmake)
command -v openssl >/dev/null || need+=(openssl)
compgen -G "/usr/include/*/cblas.h" >/dev/null || [ -f /usr/include/cblas.h ] || need+=(libopenblas-dev)
command -v python3 >/dev/null || need+=(python3)
python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)
# The contract fuzzing (infra/fuzz.sh) installs schemathesis into a virtual environment.
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need+=(python3-venv)
command -v runuser >/dev/null || need+=(util-linux)
# The public entry and the monitoring stack `make run` starts (docs/deployment.md), and `ss` for
# the port check before anything starts.
command -v ss >/dev/null || need+=(iproute2)
[ -x /usr/sbin/nginx ] || need+=(nginx)
command -v prometheus >/dev/null || need+=(prometheus)
command -v prometheus-alertmanager >/dev/null || need+=(prometheus-alertmanager)
command -v prometheus-nginx-exporter >/dev/null || need+=(prometheus-nginx-exporter)
command -v prometheus-redis-exporter >/dev/null || need+=(prometheus-redis-exporter)
command -v prometheus-postgres-exporter >/dev/null || need+=(prometheus-postgres-exporter)

if [ ${#need[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    log "missing packages: ${need[*]}; run as root or install them: apt-get install ${need[*]}"
    exit 1
fi
log "installing: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
# An apt index older than a day (or none) is refreshed first.
if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mmin -1440 2>/dev/null | head -1)" ]; then
    apt-get update -qq
fi
# Debian's postgresql-common would create and start a default cluster; we run our own.
mkdir -p /etc/postgresql-common/createcluster.d
echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.d/zaas.conf
# Packages must not start their own services (nginx on port 80, Prometheus on 9090…): the stack
# runs its own instances on its own ports. policy-rc.d says so to invoke-rc.d while they install.
policy=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod +x "$policy"
    made_policy=1
fi
status=0
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null || status=$?
[ "$made_policy" = 1 ] && rm -f "$policy"
exit $status
