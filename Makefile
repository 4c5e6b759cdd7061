# Two commands matter: `make run` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
CONFIG ?= config.toml

.PHONY: install run test lint typecheck pytest system-deps bench bench-quick soak clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(PY) server.py --config $(CONFIG)

# Real servers for the tests (redis-server, prometheus/promtool, memcached, wrk): installed
# from the distribution when missing, never mocked.
system-deps:
	@scripts/system-deps.sh

lint: install
	$(VENV)/bin/ruff check cache server.py tests scripts $(wildcard bench)

typecheck: install
	$(VENV)/bin/mypy --strict cache

pytest: install system-deps
	$(VENV)/bin/pytest -q

test: lint typecheck pytest

bench: install system-deps
	$(PY) -m bench --full

bench-quick: install system-deps
	$(PY) -m bench --quick

# The README's picture: a 30 s soak of the real service, items held and purge lag.
soak: install
	$(PY) scripts/soak.py --seconds 30 --out docs/soak.png

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache bench/out
