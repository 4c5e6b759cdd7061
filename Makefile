# Two commands matter: `make run` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
CONFIG ?= config.toml
# Every package and its hashes, resolved once (`make lock`): two machines run the same code.
LOCK := requirements.lock

.PHONY: install lock run test lint typecheck pytest system-deps bench bench-quick soak clean

# system-deps.sh build: g++ and gcc (pdqhash builds from its sdist; `pip install -e .`
# compiles our PDQ core, cache/intake/_pdqcore.c, in place) and, for Debian's own python3,
# python3-dev; nothing else (make run needs no redis or prometheus).
$(STAMP): pyproject.toml setup.py cache/intake/_pdqcore.c $(LOCK)
	PYTHON=$(PYTHON) scripts/system-deps.sh build
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --require-hashes -r $(LOCK)
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

# Re-resolve every range in pyproject.toml to the newest versions, with hashes (pip-tools),
# in a throwaway venv. Commit the new requirements.lock; `make install` then uses it.
lock:
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet 'pip-tools>=7.4,<8'
	.lock-venv/bin/pip-compile --quiet --generate-hashes --extra test --strip-extras \
		--allow-unsafe --no-emit-index-url --no-emit-find-links -o $(LOCK) pyproject.toml
	rm -rf .lock-venv

run: install
	$(PY) server.py --config $(CONFIG)

# Real servers for the tests (redis-server, prometheus/promtool, memcached, wrk): installed
# from the distribution when missing, never mocked.
system-deps:
	@scripts/system-deps.sh

lint: install
	$(VENV)/bin/ruff check cache server.py setup.py tests scripts $(wildcard bench)

typecheck: install
	$(VENV)/bin/mypy --strict cache

pytest: install system-deps
	$(VENV)/bin/pytest -q

test: lint typecheck pytest

bench: install system-deps
	$(PY) -m bench --full

bench-quick: install system-deps
	$(PY) -m bench --quick

# The README's picture: a 30 s soak of the real service: items held, RSS beside cache_bytes, purge lag.
soak: install
	$(PY) scripts/soak.py --seconds 30 --out docs/soak.png

clean:
	rm -rf $(VENV) .lock-venv .mypy_cache .pytest_cache .ruff_cache bench/out
