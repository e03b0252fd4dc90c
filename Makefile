# raftkv — every target creates the virtualenv itself when it is missing.
# The interpreter it is made from: `python3`, or the system's faster build of the same
# Python version when `python3` loads libpython as a shared library (scripts/pick-python
# says when and why). PYTHON=... chooses another.
ifeq ($(origin PYTHON),undefined)
PYTHON := $(shell sh scripts/pick-python)
endif
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# The exact versions tested; pyproject.toml holds only compatible-release ranges.
CONSTRAINTS := constraints.txt
WHEEL_DIR ?= dist
# The C extensions mypyc builds next to the sources (setup.py: the core and the simulator's
# hot path), and those written in C (src/raftkv/kv/snapshot_native.c, untracked_strings.c,
# src/raftkv/server/idle_spin.c). Any edit under src/
# rebuilds them (mypyc type-checks across modules); an extension older than its .py or .c
# is ignored at import anyway (raftkv/__init__.py).
# RAFTKV_PURE=1 at install builds none; RAFTKV_PURE=1 at run time imports every module from
# its .py file.
EXT_STAMP := $(VENV)/.mypyc-stamp
SOURCES := $(shell find src -name '*.py' -o -name '*.c')
PYTEST := $(BIN)/python -m pytest
# Two workers: CI is a shared 2-core machine.
PYTEST_WORKERS ?= 2

.PHONY: all install pins wheel test test-browser browser demo lint format sim-long bench bench-storage bench-checker bench-snapshot bench-cluster bench-http bench-kv bench-watch bench-sim clean

all: install

install: $(EXT_STAMP)

# --clear: a virtualenv made from another interpreter cannot be updated in place.
$(STAMP): pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv --clear $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	RAFTKV_PURE=1 $(BIN)/python -m pip install --quiet -c $(CONSTRAINTS) -e '.[test,lint]'
	touch $(STAMP)

$(EXT_STAMP): $(STAMP) $(SOURCES) setup.py
	$(BIN)/python -m pip install --quiet -c $(CONSTRAINTS) --no-deps -e .
	touch $(EXT_STAMP)

# Re-pin: resolve the newest releases pyproject.toml's ranges allow in a scratch
# virtualenv and write them to constraints.txt (the next make target reinstalls from it).
pins:
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	$(PYTHON) -m venv "$$tmp/venv" && \
	"$$tmp/venv/bin/python" -m pip install --quiet --upgrade pip && \
	RAFTKV_PURE=1 "$$tmp/venv/bin/python" -m pip install --quiet -e '.[test,lint]' && \
	{ sed -n '/^#/!q;p' $(CONSTRAINTS) && \
	  "$$tmp/venv/bin/python" -m pip freeze --exclude-editable; } > "$$tmp/pins" && \
	mv "$$tmp/pins" $(CONSTRAINTS) && \
	{ git diff --stat -- $(CONSTRAINTS) 2>/dev/null || true; }

# The wheel, in $(WHEEL_DIR). Built from a copy of what goes into it (setuptools would
# otherwise leave build/ in the tree, and a stale build/ or egg-info can put files the
# tree no longer has into the wheel).
wheel: $(STAMP)
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	tar -c --exclude=__pycache__ --exclude='*.egg-info' --exclude='*.so' pyproject.toml setup.py README.md LICENSE src \
	  | tar -x -C "$$tmp" && \
	$(BIN)/python -m pip wheel --quiet --no-deps -w "$(WHEEL_DIR)" "$$tmp" && \
	ls "$(WHEEL_DIR)"/raftkv-*.whl

# Two passes, nothing skipped: the suite on the modules as built, then the tests that patch
# compiled code (marked `interpreted`) on every module imported from its .py file
# (tests/conftest.py).
test: $(EXT_STAMP) browser
	$(PYTEST) -n $(PYTEST_WORKERS) -q -m 'not interpreted'
	RAFTKV_PURE=1 $(PYTEST) -n $(PYTEST_WORKERS) -q -m interpreted

# The browser tests' Chromium: Debian's /usr/bin/chromium when installed, otherwise one
# fetched once from the npm registry into .cache/chromium/ (tests/browser/chromium.py;
# BROWSER_TEST_CHROMIUM chooses another). Done before pytest starts so that a failed
# fetch stops here with its reason, not in every browser test.
browser: $(STAMP)
	$(BIN)/python -m tests.browser.chromium

# Only the browser tests (screenshots in build/screenshots/).
test-browser: $(EXT_STAMP) browser
	$(PYTEST) -q tests/browser

demo: $(EXT_STAMP)
	$(BIN)/python scripts/demo.py

lint: $(STAMP)
	$(BIN)/ruff check src tests bench examples scripts
	$(BIN)/ruff format --check src tests bench examples scripts
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format src tests bench examples scripts
	$(BIN)/ruff check --fix src tests bench examples scripts

sim-long: $(EXT_STAMP)
	RAFTKV_SIM_LONG=1 $(PYTEST) -n $(PYTEST_WORKERS) -q -m 'not interpreted' tests/sim
	RAFTKV_SIM_LONG=1 RAFTKV_PURE=1 $(PYTEST) -n $(PYTEST_WORKERS) -q -m interpreted tests/sim

bench: bench-storage bench-checker bench-snapshot bench-http bench-cluster bench-kv bench-watch bench-sim

bench-snapshot: $(EXT_STAMP)
	$(BIN)/python bench/bench_snapshot.py

bench-cluster: $(EXT_STAMP)
	$(BIN)/raft-bench

bench-kv: $(EXT_STAMP)
	$(BIN)/python bench/bench_kv_api.py

bench-http: $(EXT_STAMP)
	$(BIN)/python bench/bench_http.py

bench-storage: $(EXT_STAMP)
	$(BIN)/python bench/bench_storage.py

bench-watch: $(EXT_STAMP)
	$(BIN)/python bench/bench_watch.py

bench-checker: $(EXT_STAMP)
	$(BIN)/python bench/bench_checker.py

# The simulator's seeds per minute (issue 12's targets), with the interpreter it ran on.
bench-sim: $(EXT_STAMP)
	$(BIN)/python bench/bench_sim.py

clean:
	find src -name '*.so' -delete
	rm -rf $(VENV) build dist .cache src/*.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
