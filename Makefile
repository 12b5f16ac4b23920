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

.PHONY: help install browser demo test lint typecheck unit bench schemas clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@# gridstatus pins conflict with openleadr's in one environment (see pyproject's dev extra).
	$(BIN)/python -m pip install --quiet --no-deps "gridstatus>=0.37,<0.38"
	@touch $@

install: $(STAMP) ## create .venv and install gridshift with its dev tools

demo: $(STAMP) ## replay one real ERCOT week through the embedded broker and a worker
	$(BIN)/gridshift demo

lint: $(STAMP) ## ruff
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP) ## mypy --strict
	$(BIN)/mypy .

# The dashboard test drives Debian's chromium through chromedriver (nothing downloaded at test
# time). Installed here when missing and this user may (root with apt); otherwise that test skips.
browser: ## install Debian's chromium + chromium-driver for the dashboard test
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing Debian's chromium and chromium-driver"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null || \
	  { apt-get update -q >/dev/null && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null; }; \
	else echo "note: chromium/chromedriver missing and not installable here; the dashboard test will skip"; fi

unit: $(STAMP) browser ## the tests
	$(BIN)/pytest

test: lint typecheck unit ## lint, type-check and run every test (what CI runs)

bench: $(STAMP) ## the benchmarks (print ratios and one JSON line each)
	$(BIN)/python bench/fleet_lp.py
	$(BIN)/python bench/replay.py
	$(BIN)/python bench/e2e.py

schemas: $(STAMP) ## regenerate the JSON Schema snapshots after an intended contract change
	$(BIN)/gridshift schemas --out tests/schemas/snapshots

clean: ## remove the virtual environment and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
