# flowctl: `make run` starts the server on SQLite, `make test` runs the suite.
# Both create .venv and install the pinned dependencies first (once; again only
# when pyproject.toml or constraints.txt change).

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup test-tools run test test-postgres bench lint format clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip==26.3
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# Tools some tests drive, from Debian's packages, installed only when missing:
# headless Chromium renders /docs and /redoc (tests/e2e/test_docs.py); jq runs
# the spec's shell scripts (tests/e2e/test_spec_scripts.py).
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
test-tools:
	command -v chromium >/dev/null && command -v jq >/dev/null || \
	  ($(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends chromium jq curl)

run: setup
	$(BIN)/flowctl server

# The whole suite. PostgreSQL tests run when FLOWCTL_TEST_PG_URL (default
# postgresql://postgres@127.0.0.1:5432/test) is reachable, skip otherwise, and
# are required when CI=true.
# Tests marked `serial` stop shared services (PostgreSQL), so they run alone
# after the rest.
test: setup test-tools
	$(BIN)/python -m pytest -n 2 -m "not serial"
	$(BIN)/python -m pytest -m serial

test-postgres: setup
	$(BIN)/python -m pytest -n 2 -m "postgres and not serial"
	$(BIN)/python -m pytest -m "postgres and serial"

bench: setup
	$(BIN)/python bench/run.py

lint: setup
	$(BIN)/ruff check src tests $(wildcard bench)
	$(BIN)/ruff format --check src tests $(wildcard bench)

format: setup
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

clean:
	rm -rf $(VENV) .flowctl .pytest_cache .ruff_cache
