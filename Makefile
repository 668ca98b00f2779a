# The two commands a newcomer needs: `make run` and `make test`. Everything else is for developers.
SHELL := /bin/bash
PYTHON ?= python3.12
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
HOST ?= 127.0.0.1
PORT ?= 8000
export DJANGO_SETTINGS_MODULE ?= tradingplatform.settings.dev

## A separate virtual environment with the peers the benchmarks compare against (requirements/bench.txt).
bench-venv: | $(BIN)/python
	$(PYTHON) -m venv .venv-bench
	.venv-bench/bin/pip install --quiet -r requirements/bench.txt

.PHONY: bench-venv run test test-embedded lint format typecheck lock install migrate check-deploy clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): requirements/dev.txt requirements/base.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements/dev.txt
	touch $(STAMP)

install: $(STAMP)

## Set everything up and start the platform in embedded mode (SQLite, in-memory broker).
## Demo candles come from ../shared/data/ohlcv when it exists, else they are generated.
DEMO_CANDLES_DIR ?= $(wildcard ../shared/data/ohlcv)
run: install
	env -u REDIS_URL DEMO_CANDLES_DIR=$(DEMO_CANDLES_DIR) $(BIN)/python manage.py run_embedded --host $(HOST) --port $(PORT)

## Run the whole suite (against DATABASE_URL / REDIS_URL when set, else embedded).
test: install
	DJANGO_SETTINGS_MODULE=tradingplatform.settings.test $(BIN)/pytest $(PYTEST_ARGS)

## The suite in embedded mode (SQLite, in-memory broker and layer), whatever the environment says.
test-embedded: install
	env -u REDIS_URL -u DATABASE_URL DJANGO_SETTINGS_MODULE=tradingplatform.settings.test \
		$(BIN)/pytest -m "not postgres and not redis" $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: install
	$(BIN)/mypy apps tradingplatform

## Recompile the locked requirements from requirements/*.in.
lock: | $(BIN)/python
	$(BIN)/pip install --quiet pip-tools
	cd requirements && for f in base dev prod bench; do \
		../$(BIN)/pip-compile --quiet --strip-extras --no-emit-index-url --no-emit-find-links $$f.in -o $$f.txt; done

migrate: install
	$(BIN)/python manage.py migrate

check-deploy: install
	DJANGO_SETTINGS_MODULE=tradingplatform.settings.prod SECRET_KEY=$$(head -c 48 /dev/urandom | base64) \
		FIELD_ENCRYPTION_KEYS=$$(head -c 32 /dev/urandom | base64 | tr '+/' '-_') \
		ALLOWED_HOSTS=platform.example.com DATABASE_URL=$${DATABASE_URL:-sqlite:///tmp/check.sqlite3} \
		REDIS_URL=$${REDIS_URL:-redis://127.0.0.1:6379/0} \
		$(BIN)/python manage.py check --deploy --fail-level WARNING

clean:
	rm -rf $(VENV) staticfiles .pytest_cache .mypy_cache .ruff_cache
