#!/usr/bin/env bash
# Starts the AirLLM sidecar (infra/airllm/server.py) for `make run` when ZAAS_AIRLLM=on: the
# large-local model class, serving the tiny test model (or ZAAS_AIRLLM_MODEL_PATH, any
# transformers checkpoint folder) through AirLLM's layer-by-layer inference on 127.0.0.1:8095.
# Off by default: the first run installs PyTorch (about 3.5 GB) and trains the tiny model, which
# makes a fresh machine's `make run` several minutes slower (docs/airllm.md).
source "$(dirname "$0")/common.sh"

[ "${ZAAS_AIRLLM:-off}" = on ] || exit 0

RUN="$ZAAS_RUN_DIR"
LOGS="${ZAAS_LOG_DIR:-$ZAAS_HOME/logs}"
PORT="${ZAAS_AIRLLM_PORT:-8095}"
mkdir -p "$RUN" "$LOGS"

eval "$(bash "$(dirname "$0")/airllm/setup.sh")"

if [ -f "$RUN/airllm.pid" ]; then
    kill "$(cat "$RUN/airllm.pid")" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$(cat "$RUN/airllm.pid")" 2>/dev/null || break; sleep 0.1; done
    rm -f "$RUN/airllm.pid"
fi
if curl -fs -o /dev/null "http://127.0.0.1:$PORT/health" 2>/dev/null; then
    log "AirLLM sidecar: port $PORT is taken by another process; set ZAAS_AIRLLM_PORT"
    exit 1
fi

# The tiny model reads only the end of a prompt (make_tiny_model.py); a real model takes the
# default 512 tokens or more.
ZAAS_AIRLLM_MODEL_PATH="${ZAAS_AIRLLM_MODEL_PATH:-$ZAAS_AIRLLM_TINY_MODEL}" \
ZAAS_AIRLLM_MODEL_NAME="${ZAAS_AIRLLM_MODEL_NAME:-zaas-tiny-llama}" \
ZAAS_AIRLLM_MAX_PROMPT_TOKENS="${ZAAS_AIRLLM_MAX_PROMPT_TOKENS:-64}" \
ZAAS_AIRLLM_SHARDS_DIR="${ZAAS_AIRLLM_SHARDS_DIR:-$ZAAS_HOME/airllm-shards}" \
ZAAS_AIRLLM_THREADS="${ZAAS_AIRLLM_THREADS:-1}" \
ZAAS_AIRLLM_PORT="$PORT" \
    "$ZAAS_AIRLLM_PYTHON" "$ZAAS_ROOT/infra/airllm/server.py" >>"$LOGS/airllm.log" 2>&1 </dev/null &
echo $! >"$RUN/airllm.pid"

for _ in $(seq 1 600); do
    if curl -fs -o /dev/null "http://127.0.0.1:$PORT/health"; then
        log "AirLLM sidecar: on 127.0.0.1:$PORT"
        exit 0
    fi
    kill -0 "$(cat "$RUN/airllm.pid")" 2>/dev/null || break
    sleep 0.2
done
log "the AirLLM sidecar did not become healthy on port $PORT; last log lines:"
tail -n 20 "$LOGS/airllm.log" >&2 || true
exit 1
