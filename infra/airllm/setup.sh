#!/usr/bin/env bash
# The AirLLM sidecar's Python environment and the tiny model it serves in tests and `make run`,
# both made once per machine under $ZAAS_TOOLS_DIR (default /var/cache/zaas), outside the checkout:
#
# * airllm-venv-<key>: a virtual environment with infra/airllm/requirements.txt (PyTorch, AirLLM,
#   transformers, FastAPI, uvicorn), keyed by that file's SHA-256. The first install downloads
#   about 3.5 GB (PyTorch and NVIDIA's libraries, which PyPI's torch needs even on CPU) and takes
#   about 3 minutes here; later runs find it.
# * airllm-tiny-<key>: the tiny Llama model (infra/airllm/make_tiny_model.py), keyed by the
#   environment, the script, the demo canon and its questions. Training it takes 2 to 9 minutes
#   on two cores (the more the machine is loaded, the longer).
#
# .zaas/airllm-venv and .zaas/airllm-model link to them. Prints the two paths as shell assignments
# (ZAAS_AIRLLM_PYTHON=… and ZAAS_AIRLLM_TINY_MODEL=…) so callers can `eval "$(infra/airllm/setup.sh)"`.
source "$(dirname "$0")/../common.sh"

TOOLS="${ZAAS_TOOLS_DIR:-/var/cache/zaas}"
HERE="$ZAAS_ROOT/infra/airllm"
mkdir -p "$TOOLS" "$ZAAS_HOME"

key() { cat "$@" | sha256sum | cut -c1-12; }

VENV_KEY="$(key "$HERE/requirements.txt")"
VENV="$TOOLS/airllm-venv-$VENV_KEY"
MODEL_KEY="$(key "$HERE/requirements.txt" "$HERE/make_tiny_model.py" "$ZAAS_ROOT/infra/demo-canon-eval.json" \
    $(find "$ZAAS_ROOT/infra/demo-canon" -type f | sort))"
MODEL="$TOOLS/airllm-tiny-$MODEL_KEY"

# One setup at a time per machine (make run and make test may start together).
exec 9>"$TOOLS/.airllm.lock"
flock 9

if [ ! -x "$VENV/bin/python" ] || [ ! -f "$VENV/.complete" ]; then
    log "AirLLM sidecar: installing PyTorch, AirLLM and FastAPI into $VENV (once per machine; about 3.5 GB, a few minutes)"
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check -r "$HERE/requirements.txt" >&2
    "$VENV/bin/python" -c 'import airllm, torch, fastapi, uvicorn' >&2
    touch "$VENV/.complete"
fi

if [ ! -f "$MODEL/.complete" ]; then
    log "AirLLM sidecar: training the tiny test model into $MODEL (once per machine; a few minutes)"
    rm -rf "$MODEL"
    work="$(mktemp -d "$TOOLS/.airllm-tiny.XXXXXX")"
    if ! "$VENV/bin/python" "$HERE/make_tiny_model.py" --canon "$ZAAS_ROOT/infra/demo-canon" \
        --questions "$ZAAS_ROOT/infra/demo-canon-eval.json" --out "$work/model" 2>"$work/train.log"; then
        tail -20 "$work/train.log" >&2
        rm -rf "$work"
        exit 1
    fi
    mv "$work/model" "$MODEL"
    mv "$work/train.log" "$MODEL/train.log"
    rm -rf "$work"
    touch "$MODEL/.complete"
fi

ln -sfn "$VENV" "$ZAAS_HOME/airllm-venv"
ln -sfn "$MODEL" "$ZAAS_HOME/airllm-model"
echo "ZAAS_AIRLLM_PYTHON=$VENV/bin/python"
echo "ZAAS_AIRLLM_TINY_MODEL=$MODEL"
