# gridshift developer entry points. Every target creates the virtual environment it needs.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# Real historical data: ../shared/data beside the checkout, unless GRIDSHIFT_DATA_DIR is set.
SHARED_DATA := $(wildcard $(CURDIR)/../shared/data)
ifneq ($(SHARED_DATA),)
export GRIDSHIFT_DATA_DIR ?= $(abspath $(SHARED_DATA))
endif

.PHONY: help install demo test lint typecheck unit bench schemas clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $@

install: $(STAMP) ## create .venv and install gridshift with its dev tools

demo: $(STAMP) ## replay one real ERCOT week through the embedded broker and a worker
	$(BIN)/gridshift demo

lint: $(STAMP) ## ruff
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP) ## mypy --strict
	$(BIN)/mypy .

unit: $(STAMP) ## the tests
	$(BIN)/pytest

test: lint typecheck unit ## lint, type-check and run every test (what CI runs)

bench: $(STAMP) ## the benchmarks (print ratios and one JSON line each)
	$(BIN)/python bench/optimizer.py

schemas: $(STAMP) ## regenerate the JSON Schema snapshots after an intended contract change
	$(BIN)/gridshift schemas --out tests/schemas/snapshots

clean: ## remove the virtual environment and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
