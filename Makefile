# Two commands do everything on a fresh machine:  `make bench`  and  `make test`.
PY        ?= python3
VENV      ?= .venv
BIN       := $(VENV)/bin
MODEL     ?= smollm2-135m
TASKS     ?= gsm8k,mmlu
LIMIT     ?=
QUANT     ?=
# Local Hub-layout mirror of openai/gsm8k and cais/mmlu; set DATA_DIR= (empty) to use the real Hub.
DATA_DIR  ?= $(if $(wildcard ../shared/data/hub),../shared/data/hub,)

BENCH_ARGS := --model $(MODEL) --tasks $(TASKS) $(if $(LIMIT),--limit $(LIMIT)) $(if $(QUANT),--quant $(QUANT)) $(if $(DATA_DIR),--data-dir $(DATA_DIR))

.PHONY: setup bench test test-fast lint models

$(BIN)/harness: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# llama-cpp-python is sdist-only: the first install compiles llama.cpp (~10-20 min on 2 cores);
	# pip caches the built wheel, so later installs take seconds.
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

setup: $(BIN)/harness  ## create .venv and install the harness with its dependencies

bench: setup  ## run GSM8K and MMLU on MODEL (default smollm2-135m, offline) and print the score table
	$(BIN)/harness bench $(BENCH_ARGS)

models: setup
	$(BIN)/harness models

test: setup  ## the full test suite (includes end-to-end runs of smollm2-135m through llama.cpp)
	HARNESS_DATA_DIR=$(abspath $(DATA_DIR)) $(BIN)/python -m pytest -q

test-fast: setup  ## tests without the real model
	HARNESS_DATA_DIR=$(abspath $(DATA_DIR)) $(BIN)/python -m pytest -q -m "not slow"

lint: setup
	$(BIN)/ruff check harness tests scripts
