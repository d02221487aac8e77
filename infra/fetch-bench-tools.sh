#!/usr/bin/env bash
# What `make bench` compares ZaaS with (docs/benchmarks.md): nginx from Debian (the instant model
# backend) and LiteLLM's proxy from PyPI, installed once per machine outside the checkout, keyed
# by version. Prints the LiteLLM executable's path.
source "$(dirname "$0")/common.sh"

LITELLM_VERSION=1.106.12
# (The newest whose proxy extra resolves from the package index here: 1.108 pins a
# litellm-proxy-extras it lacks, 1.110 moved the proxy into a `litellm-proxy` package it lacks.)
TOOLS="${ZAAS_TOOLS_DIR:-/var/cache/zaas}"

if ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ]; then
    if [ "$(id -u)" -ne 0 ]; then
        log "nginx is missing; run as root or install it: apt-get install nginx" >&2
        exit 1
    fi
    log "installing nginx" >&2
    export DEBIAN_FRONTEND=noninteractive
    if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mmin -1440 2>/dev/null | head -1)" ]; then
        apt-get update -qq
    fi
    # The benchmark runs its own nginx on loopback: keep the package's service from starting on :80.
    added_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        added_policy=1
    fi
    apt-get install -y -qq --no-install-recommends nginx-light >/dev/null 2>&1 \
        || apt-get install -y -qq --no-install-recommends nginx >/dev/null
    [ "$added_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
fi

LITELLM="$TOOLS/litellm-$LITELLM_VERSION"
if [ ! -f "$LITELLM/.complete" ]; then
    log "installing LiteLLM $LITELLM_VERSION (proxy) into $LITELLM" >&2
    venv_install "$LITELLM" "litellm[proxy]==$LITELLM_VERSION"
fi
echo "$LITELLM/bin/litellm"
