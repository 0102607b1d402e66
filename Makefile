# ReID Service — developer entry points. `make test` is what CI runs (.ci/run).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dev
# The CPU wheel of torch must be installed first, pinned: a looser spec pulls several GB of CUDA wheels.
TORCH  := torch==2.13.0
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: help install deploy-tools browser-tools reference-sdists test test-slow reliability lint run demo-models clean

help:
	@echo "make test         create .venv, install torch (CPU) + .[cpu,train,dev], run ruff and pytest"
	@echo "make browser-tools  (root) apt-get install chromium chromium-driver for the console's browser tests"
	@echo "make test-slow    the long tests and those that need a package registry (markers 'slow', 'network')"
	@echo "make reliability  the whole threat table (tests/reliability), printed with measured figures"
	@echo "make demo-models  train + export the demo models into models/ (synthetic data, 2 CPU cores)"
	@echo "make run          serve the demo models on http://$(HOST):$(PORT)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install "$(TORCH)"
	$(BIN)/python -m pip install -e ".[cpu,train,dev]"
	touch $(STAMP)

install: $(STAMP)

lint: install
	$(BIN)/ruff check .

# Debian's docker-compose validates docker-compose.yml in tests/deploy (no Docker engine needed).
deploy-tools:
	@command -v docker-compose >/dev/null 2>&1 || docker compose version >/dev/null 2>&1 || \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  (apt-get install -y --no-install-recommends docker-compose || \
	   (apt-get update && apt-get install -y --no-install-recommends docker-compose)) >/dev/null \
	  || echo "deploy-tools: apt-get could not install docker-compose: tests/deploy skips docker-compose config"; \
	else echo "deploy-tools: no docker-compose and apt-get needs root: tests/deploy skips docker-compose config"; fi

# Debian's chromium + chromium-driver drive the console's browser tests (tests/service/ui; no browser download).
browser-tools:
	@command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 || \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  (apt-get install -y --no-install-recommends chromium chromium-driver || \
	   (apt-get update && apt-get install -y --no-install-recommends chromium chromium-driver)) >/dev/null \
	  || echo "browser-tools: apt-get could not install chromium: tests/service/ui skips the browser tests"; \
	else echo "browser-tools: no chromium and apt-get needs root: tests/service/ui skips the browser tests"; fi

# The peers' source distributions (torchreid 0.2.5, fast-reid 1.4.0) that the importer parity tests load as the
# reference: fetched here with the package installs into $REID_TEST_CACHE (default ~/.cache/reid-tests), never
# into the repository, so the tests make no network call.
reference-sdists: install
	$(BIN)/python -m tests.training.importers.upstream

test: install deploy-tools browser-tools reference-sdists
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -m "not slow and not network"

test-slow: install reference-sdists
	$(BIN)/python -m pytest -m "slow or network"

# Every row of the threat table (tests/reliability/README.md), long variants and latency bounds included.
reliability: install
	$(BIN)/python benchmarks/reliability_report.py

demo-models: install
	$(BIN)/python -m training.demo_models --models-dir models

run: install
	@[ -f models/demo-osnet/manifest.json ] || $(MAKE) demo-models
	$(BIN)/reid serve --host $(HOST) --port $(PORT)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache *.egg-info
