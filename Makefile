# Keeper Sync. `make run` sets everything up and starts the service; `make bot` starts the
# Discord bot beside it; `make test` runs the tests.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CHAOS_ARGS ?=
BENCH_ARGS ?=

.PHONY: run bot setup test chaos bench lint format install clean

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

install: $(VENV)/.installed

.env:
	cp .env.example .env
	printf 'SECRET_KEY=%s\n' "$$($(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(50))')" >> .env
	@echo "wrote .env with a new SECRET_KEY; edit it to point at your databases"

setup: install .env

run: setup
	$(PY) manage.py migrate --no-input
	$(PY) manage.py collectstatic --no-input --verbosity 0
	$(PY) manage.py runservice

bot: setup
	$(PY) manage.py migrate --no-input
	$(PY) manage.py runbot

test: install
	$(PY) -m pytest

# Fault injection with real processes: short sizes, four scenarios at a time; FULL=1 runs the
# full sizes one at a time, so that each scenario's timings are its own.
chaos: install
	$(PY) -m chaos $(if $(FULL),--full,--jobs 4) $(CHAOS_ARGS)

# Drain rate against SQLite's own limits (L, L2) and the old bot's pattern (P), median of 3 runs;
# growth to 1 M queue rows; the API under wrk (Debian's, installed here if missing) and memory;
# prints one table and writes bench/results.json. BENCH_ARGS=--smoke is the minute-long one.
bench: install
	command -v wrk >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk)
	$(PY) -m bench $(BENCH_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) staticfiles .pytest_cache
