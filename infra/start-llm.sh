#!/usr/bin/env bash
# Starts the local model class for `make run`: llama.cpp's llama-server with SmolLM2-135M-Instruct
# (both from infra/fetch-llm.sh, built or fetched once per machine) on loopback, and waits until
# it answers. Restarts the one this run folder started, so a new build or model is picked up.
# ZAAS_LLM=off skips it (the stack then answers with the extractive answerer only).
source "$(dirname "$0")/common.sh"

[ "${ZAAS_LLM:-on}" = off ] && { log "local model: off (ZAAS_LLM=off)"; exit 0; }

RUN="$ZAAS_RUN_DIR"
LOGS="${ZAAS_LOG_DIR:-$ZAAS_HOME/logs}"
ZAAS_LLM_PORT="${ZAAS_LLM_PORT:-8090}"
mkdir -p "$RUN" "$LOGS"

eval "$(bash "$(dirname "$0")/fetch-llm.sh")"

if [ -f "$RUN/llm.pid" ]; then
    kill "$(cat "$RUN/llm.pid")" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$(cat "$RUN/llm.pid")" 2>/dev/null || break; sleep 0.1; done
    rm -f "$RUN/llm.pid"
fi
# One started by another run folder (make run's, while smoke.sh runs beside it) serving the same
# model is used as it is, and left running.
if curl -fs "http://127.0.0.1:$ZAAS_LLM_PORT/v1/models" 2>/dev/null | grep -q '"smollm2-135m-instruct"'; then
    log "local model: using the llama-server already on 127.0.0.1:$ZAAS_LLM_PORT"
    exit 0
fi

# Two threads: the machine's cores are shared with the planes, PostgreSQL and Redis. A 4096-token
# context holds the prompt the nodes cut to the catalog entry's context window.
"$ZAAS_LLAMA_SERVER" -m "$ZAAS_LLM_MODEL" --host 127.0.0.1 --port "$ZAAS_LLM_PORT" \
    --threads 2 --ctx-size 4096 --parallel 2 --alias smollm2-135m-instruct \
    >>"$LOGS/llm.log" 2>&1 </dev/null &
echo $! >"$RUN/llm.pid"

for _ in $(seq 1 300); do
    if curl -fs -o /dev/null "http://127.0.0.1:$ZAAS_LLM_PORT/health"; then
        log "local model: llama-server on 127.0.0.1:$ZAAS_LLM_PORT"
        exit 0
    fi
    sleep 0.2
done
log "llama-server did not become healthy on port $ZAAS_LLM_PORT; last log lines:"
tail -n 20 "$LOGS/llm.log" >&2 || true
exit 1
