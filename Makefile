# ClimateWatch: `make demo` runs the product, `make test` runs the tests.
# Both set everything up on a fresh machine (virtualenv, pinned packages, Kafka jars)
# and reuse what is already there on the next run.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.climatewatch-installed
PIP := $(BIN)/pip install --quiet --disable-pip-version-check
PYTEST_ARGS ?=

.PHONY: help install kafka browser test lint format demo bench chaos clean

help:
	@echo "make demo   run ClimateWatch on embedded defaults (Ctrl-C stops it)"
	@echo "make test   lint and run the whole test suite"
	@echo "make bench  run the benchmarks and print their tables"
	@echo "make chaos  fault scenarios on a 3-node Kafka cluster (CHAOS_ARGS=--quick)"
	@echo "make lint   ruff check and format check;  make format  fix them"
	@echo "make browser  install Debian's chromium and chromium-driver (browser tests)"

install: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) -r requirements.lock
	$(PIP) --no-deps -e .
	@touch $@

kafka: install
	@$(BIN)/climatewatch kafka fetch

# Headless Chromium and its driver for the browser tests (Debian packages, run as root).
# Nothing happens when both are already there; apt-get update only when the install fails.
CHROMIUM := /usr/bin/chromium
CHROMEDRIVER := /usr/bin/chromedriver
APT_INSTALL := DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium chromium-driver

browser:
	@if [ ! -x $(CHROMIUM) ] || [ ! -x $(CHROMEDRIVER) ]; then \
		$(APT_INSTALL) || { apt-get update && $(APT_INSTALL); }; \
	fi

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: install kafka browser lint
	$(BIN)/pytest $(PYTEST_ARGS)

demo: install kafka
	$(BIN)/climatewatch demo

bench: install kafka
	$(BIN)/python -m bench $(BENCH_ARGS)

chaos: install kafka
	$(BIN)/python -m bench.chaos $(CHAOS_ARGS)

clean:
	rm -rf $(VENV) data .pytest_cache .ruff_cache
