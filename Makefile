# Tollway's two commands: `make run` (install and serve with embedded defaults) and `make test`.
# Both install the exact versions tested (requirements.lock, requirements-dev.lock, with hashes), then Tollway
# itself without resolving again; `make lock` regenerates the lock files after a change to pyproject.toml.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export TOLLWAY_DATABASE_URL ?= sqlite:///./tollway.db
# The PostgreSQL role and database scripts/ensure-services.sh creates for the tests.
export TOLLWAY_TEST_POSTGRES_URL ?= postgresql://tollway_test:tollway_test@127.0.0.1:5432/tollway_test

.PHONY: run test check bench services install dev lock wheel screenshots

$(BIN)/tollway: pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --require-hashes -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

$(VENV)/.dev-installed: $(BIN)/tollway pyproject.toml requirements-dev.lock
	$(BIN)/pip install --quiet --require-hashes -r requirements-dev.lock
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

install: $(BIN)/tollway

dev: $(VENV)/.dev-installed

## Install, create the SQLite database, bootstrap the demo account, user and key, serve on 127.0.0.1:8080.
run: install
	$(BIN)/tollway demo
	$(BIN)/tollway serve

## Install the dev dependencies, make sure PostgreSQL and Redis run, run the whole suite.
## The suite starts the CLI and the gateway hundreds of times: Tollway's modules are compiled once first and read
## by every process, also where PYTHONDONTWRITEBYTECODE keeps Python from caching them itself.
test: dev services
	$(BIN)/python -m compileall -q src
	$(BIN)/python -m pytest

services:
	bash scripts/ensure-services.sh

check: dev
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

## Regenerate the lock files from pyproject.toml, keeping the versions the venv runs where the ranges allow.
lock:
	bash scripts/lock.sh

## The wheel and source distribution, into dist/.
wheel: dev
	$(BIN)/python -m build --no-isolation --outdir dist .

## Copy the browser tests' latest screenshots (tests/artifacts/screenshots, made by `make test`) into docs/.
screenshots: dev services
	$(BIN)/python -m pytest tests/browser
	mkdir -p docs/screenshots
	cp tests/artifacts/screenshots/*.png docs/screenshots/

bench: dev
	$(BIN)/python bench/run.py
