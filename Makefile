# Tollway's two commands: `make run` (install and serve with embedded defaults) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export TOLLWAY_DATABASE_URL ?= sqlite:///./tollway.db

.PHONY: run test check bench services install dev

$(BIN)/tollway: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.dev-installed: $(BIN)/tollway pyproject.toml
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/tollway

dev: $(VENV)/.dev-installed

## Install, create the SQLite database, bootstrap the demo account and key, serve on 127.0.0.1:8080.
run: install
	$(BIN)/tollway demo
	$(BIN)/tollway serve

## Install the dev dependencies, make sure PostgreSQL and Redis run, run the whole suite.
test: dev services
	$(BIN)/python -m pytest

services:
	bash scripts/ensure-services.sh

check: dev
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

bench: dev
	$(BIN)/python bench/run.py
