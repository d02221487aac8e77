"""Schemathesis hooks for infra/fuzz.sh (loaded through SCHEMATHESIS_HOOKS).

`POST /internal/v1/audit` takes `application/x-ndjson` (one audit event per line): its generated
bodies are strings, sent as they are, like `text/plain`.
"""
import schemathesis

schemathesis.serializer.alias("application/x-ndjson", "text/plain")
