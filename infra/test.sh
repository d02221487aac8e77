#!/usr/bin/env bash
# The whole test suite: build, every Swift test against the running PostgreSQL and Redis, then
# the end-to-end smoke test of the real executables, then the contract fuzzing of both planes
# (infra/fuzz.sh). Ends with one summary line.
source "$(dirname "$0")/common.sh"
cd "$ZAAS_ROOT"
mkdir -p "$ZAAS_HOME/logs"
report="$ZAAS_HOME/logs/swift-test.log"

swift build --build-tests
set +e
swift test --skip-build 2>&1 | tee "$report"
status=${PIPESTATUS[0]}
set -e
summary=$(grep -aE 'Test run with [0-9]+ tests? in [0-9]+ suites? (passed|failed)' "$report" | tail -1 | sed 's/\x1b\[[0-9;]*m//g')
tests=$(sed -nE 's/.*Test run with ([0-9]+) tests?.*/\1/p' <<<"$summary")
failed=$(grep -acE '✘ Test ".*" failed after' "$report" || true)
if [ "$status" -ne 0 ] || [ -z "$tests" ] || [ "${tests:-0}" -eq 0 ]; then
    echo "swift test: ${tests:-0} run, exit status $status"
    echo "tests: $(( ${tests:-0} - failed )) passed, $(( failed > 0 ? failed : 1 )) failed"
    exit 1
fi

bash "$(dirname "$0")/smoke.sh"
bash "$(dirname "$0")/fuzz.sh"
echo "tests: $((tests + 2)) passed, 0 failed"
