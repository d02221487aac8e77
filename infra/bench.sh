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
for bench in $benches; do
    swift build -c release --product "$bench"
    log "running $bench"
    ".build/release/$bench"
done
