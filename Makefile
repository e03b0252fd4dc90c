# raftkv — every target creates the virtualenv itself when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST := $(BIN)/python -m pytest
# Two workers: CI is a shared 2-core machine.
PYTEST_WORKERS ?= 2

.PHONY: all install test demo lint format sim-long bench bench-storage bench-checker bench-snapshot bench-cluster bench-http clean

all: install

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,lint]'
	touch $(STAMP)

test: $(STAMP)
	$(PYTEST) -n $(PYTEST_WORKERS) -q

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

lint: $(STAMP)
	$(BIN)/ruff check src tests bench examples scripts
	$(BIN)/ruff format --check src tests bench examples scripts
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format src tests bench examples scripts
	$(BIN)/ruff check --fix src tests bench examples scripts

sim-long: $(STAMP)
	RAFTKV_SIM_LONG=1 $(PYTEST) -n $(PYTEST_WORKERS) -q tests/sim

bench: bench-storage bench-checker bench-snapshot bench-http bench-cluster

bench-snapshot: $(STAMP)
	$(BIN)/python bench/bench_snapshot.py

bench-cluster: $(STAMP)
	$(BIN)/raft-bench

bench-http: $(STAMP)
	$(BIN)/python bench/bench_http.py

bench-storage: $(STAMP)
	$(BIN)/python bench/bench_storage.py

bench-checker: $(STAMP)
	$(BIN)/python bench/bench_checker.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
