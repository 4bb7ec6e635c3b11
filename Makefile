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

.PHONY: setup setup-rpc setup-cuda bench test test-fast lint models compare publish smoke regress baseline

$(BIN)/harness: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# llama-cpp-python is sdist-only: the first install compiles llama.cpp (~10-20 min on 2 cores);
	# pip caches the built wheel, so later installs take seconds.
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

setup: $(BIN)/harness  ## create .venv and install the harness with its dependencies

# llama.cpp RPC (README, "Bigger than one machine"): rebuild llama-cpp-python with ggml's RPC backend.
# --no-cache-dir: pip's cached wheel is the build without RPC (the cache is keyed by version, not flags).
setup-rpc: setup  ## rebuild llama-cpp-python with -DGGML_RPC=on (~10 min on 2 cores)
	CMAKE_ARGS="-DGGML_RPC=on" $(BIN)/pip install --no-cache-dir --force-reinstall --no-deps \
	  "llama-cpp-python==$$($(BIN)/python -c 'import importlib.metadata as m; print(m.version("llama-cpp-python"))')"
	$(BIN)/python -c "import llama_cpp, sys; sys.exit(0 if llama_cpp.llama_supports_rpc() else 'RPC build failed')"

setup-cuda: setup  ## rebuild llama-cpp-python with CUDA for this machine's GPU (needs nvcc; ~4 min on 16 cores)
	CMAKE_ARGS="-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=native -DGGML_CUDA_FA=OFF" \
	  $(BIN)/pip install --no-cache-dir --force-reinstall --no-deps \
	  "llama-cpp-python==$$($(BIN)/python -c 'import importlib.metadata as m; print(m.version("llama-cpp-python"))')"
	$(BIN)/python -c "import sys, harness.devices as d; g = d.local_gpus(); print(g) if g else sys.exit('no GPU visible to the new build')"

bench: setup  ## run GSM8K and MMLU on MODEL (default smollm2-135m, offline) and print the score table
	$(BIN)/harness bench $(BENCH_ARGS)

compare: setup  ## every claim beside its measurement, with a verdict
	$(BIN)/harness compare

publish: setup  ## regenerate results/README.md, CSV, plots and report.html from results/runs
	$(BIN)/harness publish

# The CI smoke bench: small, fixed subsets of SmolLM2 (offline), compared with results/baselines.
SMOKE_DIR  ?= build/smoke
SMOKE_ARGS := --model smollm2-135m --threads 2 $(if $(DATA_DIR),--data-dir $(DATA_DIR)) --results-dir $(SMOKE_DIR)

smoke: setup  ## small fixed bench on the offline model into $(SMOKE_DIR)
	rm -rf $(SMOKE_DIR)
	$(BIN)/harness bench $(SMOKE_ARGS) --tasks gsm8k --limit 16
	$(BIN)/harness bench $(SMOKE_ARGS) --tasks mmlu_cloze --limit 57

regress: smoke  ## smoke bench, then fail if a score fell below results/baselines by more than noise
	$(BIN)/harness regress --results-dir $(SMOKE_DIR)

baseline: smoke  ## refresh results/baselines from a new smoke bench (review the diff before committing)
	rm -f results/baselines/*.json
	mkdir -p results/baselines
	cp $(SMOKE_DIR)/runs/*.json results/baselines/
	rm -f results/baselines/*.lm_eval.json

models: setup
	$(BIN)/harness models

test: setup  ## the full test suite (includes end-to-end runs of smollm2-135m through llama.cpp)
	HARNESS_DATA_DIR=$(abspath $(DATA_DIR)) $(BIN)/python -m pytest -q

test-fast: setup  ## tests without the real model
	HARNESS_DATA_DIR=$(abspath $(DATA_DIR)) $(BIN)/python -m pytest -q -m "not slow"

lint: setup
	$(BIN)/ruff check harness tests scripts
