#!/usr/bin/env bash
# Runs the benchmarks and prints their figures; docs/benchmarks.md records method and results.
# Each benchmark is an executable target named bench-* (Tests/Benchmarks/); it needs the local
# stack's PostgreSQL and Redis, which `make bench` starts.
source "$(dirname "$0")/common.sh"
cd "$ZAAS_ROOT"
benches=$(swift package describe --type json 2>/dev/null | python3 -c '
import json, sys
for product in json.load(sys.stdin).get("products", []):
    if product["name"].startswith("bench-"):
        print(product["name"])
')
if [ -z "$benches" ]; then
    log "no benchmarks defined yet"
    exit 0
fi
# bench-airllm is Python (infra/airllm/bench.py), in the sidecar's environment.
benches="$benches bench-airllm"
# BENCH=bench-gateway (or several, space-separated) runs only those.
benches="${BENCH:-$benches}"
# Everything in release: benchmarks start zaas-control and zaas-data from the same build.
swift build -c release
# The gateway benchmark routes to the local model (its own run folder, stopped at the end) and
# compares with LiteLLM's proxy in front of nginx (both installed once per machine).
export ZAAS_RUN_DIR="$ZAAS_HOME/bench" ZAAS_LOG_DIR="$ZAAS_HOME/bench"
bash "$(dirname "$0")/start-llm.sh"
trap '[ -f "$ZAAS_RUN_DIR/llm.pid" ] && kill "$(cat "$ZAAS_RUN_DIR/llm.pid")" 2>/dev/null; true' EXIT
ZAAS_LITELLM="$(bash "$(dirname "$0")/fetch-bench-tools.sh")"
export ZAAS_LITELLM
for bench in $benches; do
    log "running $bench"
    if [ "$bench" = bench-airllm ]; then
        eval "$(bash "$(dirname "$0")/airllm/setup.sh")"
        "$ZAAS_AIRLLM_PYTHON" "$(dirname "$0")/airllm/bench.py" --model "$ZAAS_AIRLLM_TINY_MODEL"
        continue
    fi
    ".build/release/$bench"
    if [ "$bench" = bench-embeddings ]; then
        # Its anchor, in the same run: the same model in PyTorch (the AirLLM sidecar's environment).
        eval "$(bash "$(dirname "$0")/airllm/setup.sh")"
        "$ZAAS_AIRLLM_PYTHON" Tests/Benchmarks/EmbeddingsBench/anchor.py "$ZAAS_ROOT/.zaas/models/all-MiniLM-L6-v2"
    fi
done
