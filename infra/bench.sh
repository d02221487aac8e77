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
# Everything in release: benchmarks start zaas-control and zaas-data from the same build.
swift build -c release
for bench in $benches; do
    log "running $bench"
    ".build/release/$bench"
done
