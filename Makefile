# Two commands matter: `make quickstart` and `make test`. Both start from nothing:
# they create .venv, install torch 2.13.0 first (a bare `torch` would pull a multi-GB CUDA
# build), then this project with its dev extras.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml Makefile | cksum | cut -d' ' -f1)

# Tests and the quickstart never reach a model hub or send usage stats.
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export RAY_USAGE_STATS_ENABLED ?= 0
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install quickstart test unit integration gpu lint format clean

install: $(STAMP)

$(STAMP):
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[dev]"
	# BOHB's hpbandster (2018, source only) also requires netifaces, a C extension used only
	# by its own name server, which Ray's TuneBOHB never starts: its other needs are above.
	$(BIN)/python -m pip install -q --no-deps hpbandster==0.7.4
	rm -f $(VENV)/.installed-*
	touch $@

quickstart: install
	$(BIN)/raytune-ft tune experiments/quickstart.yaml

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

unit: install
	$(BIN)/python -m pytest tests/unit -q

integration: install
	$(BIN)/python -m pytest tests/integration -q

gpu: install
	$(BIN)/python -m pytest tests/gpu -q -m gpu

test: lint
	$(BIN)/python -m pytest tests -q --durations=25

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache experiments/runs
