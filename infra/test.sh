#!/usr/bin/env bash
# The whole test suite: build, every Swift test against the running PostgreSQL and Redis, the
# offline checks of the deployment files (infra/deploy-check.sh: alert rules and their unit tests,
# nginx, dashboards, Dockerfiles, compose), then the end-to-end smoke test of the real executables
# with the operations checks (nginx, alerts, dashboards, a node lost under load), then the contract
# fuzzing of both planes (infra/fuzz.sh). Ends with one summary line.
source "$(dirname "$0")/common.sh"
cd "$ZAAS_ROOT"
mkdir -p "$ZAAS_HOME/logs"

swift build --build-tests

# The suite creates and drops a database per test, hundreds in a run, and every DROP DATABASE
# forces a checkpoint that fsyncs each file the creations wrote since the last. On a slow disk one
# such checkpoint took 20 to 48 s, and the next drop waited for it; without fsync, milliseconds.
# The suite tests ZaaS, not the disk: the local cluster runs without fsync while it runs, and gets
# it back (with a checkpoint and a sync, so what was written is durable again) however it ends.
# Production settings are untouched; the cluster's own postgresql.conf keeps `fsync = on`.
if pg_running; then
    pg_super -c "ALTER SYSTEM SET fsync = off" -c "SELECT pg_reload_conf()" >/dev/null
    trap 'pg_super -c "ALTER SYSTEM RESET fsync" -c "SELECT pg_reload_conf()" >/dev/null; sleep 1; pg_super -c "CHECKPOINT" >/dev/null; sync' EXIT
fi

# Runs one `swift test` pass into a report; sets `ran` and `failed` (tests), `status` (exit code).
run_pass() { # report, then swift test's selection arguments
    local report="$1"; shift
    set +e
    swift test --skip-build "$@" 2>&1 | tee "$report"
    status=${PIPESTATUS[0]}
    set -e
    local summary
    summary=$(grep -aE 'Test run with [0-9]+ tests? in [0-9]+ suites? (passed|failed)' "$report" | tail -1 \
        | sed 's/\x1b\[[0-9;]*m//g')
    ran=$(sed -nE 's/.*Test run with ([0-9]+) tests?.*/\1/p' <<<"$summary")
    # Swift Testing writes `✘ Test "display name" failed after …` or `✘ Test name() failed after …`;
    # XCTest writes `Test Case '…' failed (…)`.
    failed=$(grep -acE "✘ Test .* failed after|Test Case '.*' failed \(" "$report" || true)
}

# What failed, and why, in a few lines at the end of the output where a CI log's tail shows it.
failure_lines() { # reports
    sed 's/\x1b\[[0-9;]*m//g' "$@" | grep -aE "^ *✘|Test Case '.*' failed \(|Fatal error|[Cc]rashed|exited with signal" \
        | grep -avE '^✘ Test run with|Suite .* failed after' | head -40
}

# The AirLLM sidecar's cluster tests run in a pass of their own after the rest: their generations
# keep a core busy for a minute or more, which starves the tests that time Redis round trips.
run_pass "$ZAAS_HOME/logs/swift-test.log" --skip AirLLMClusterTests
tests=${ran:-0}
failures=$failed
first_status=$status
run_pass "$ZAAS_HOME/logs/swift-test-airllm.log" --filter AirLLMClusterTests
tests=$((tests + ${ran:-0}))
failures=$((failures + failed))
if [ "$first_status" -ne 0 ] || [ "$status" -ne 0 ] || [ "${ran:-0}" -eq 0 ] || [ "$tests" -eq 0 ]; then
    echo "swift test: $tests run, exit statuses $first_status and $status; what failed:"
    failure_lines "$ZAAS_HOME/logs/swift-test.log" "$ZAAS_HOME/logs/swift-test-airllm.log" | sed 's/^/  /'
    echo "tests: $(( tests - failures )) passed, $(( failures > 0 ? failures : 1 )) failed"
    exit 1
fi

bash "$(dirname "$0")/deploy-check.sh"
bash "$(dirname "$0")/smoke.sh"
bash "$(dirname "$0")/fuzz.sh"
echo "tests: $((tests + 3)) passed, 0 failed"
