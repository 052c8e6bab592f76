# The two commands a new user needs:  make demo  and  make test.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
# The test suite uses the real services: PostgreSQL and Redis on this machine (or docker compose).
# Only TEST_DATABASE_URL and TEST_BROKER_URL choose them: an app's DATABASE_URL and
# CELERY_BROKER_URL in the environment are left alone (tests must not feed a running worker).
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/clm
TEST_BROKER_URL ?= redis://127.0.0.1:6379/14
# The tests clear the cache before each test: never the app's (CACHE_URL is not read).
TEST_CACHE_URL ?= redis://127.0.0.1:6379/13
# Test processes (pytest-xdist), one per core; each gets its own test database, Redis
# databases and var/ directory (tests/xdist_services.py). TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= 2

.PHONY: setup demo test lint audit run worker bench-import clean

$(BIN)/.installed: requirements.txt constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11 is required (set PYTHON=...)"; exit 1; }
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt -c constraints.txt
	touch $@

setup: $(BIN)/.installed

# Embedded default: SQLite under var/, tasks in-process. Loads the demo shop and serves it.
demo: setup
	env -u DATABASE_URL -u CELERY_BROKER_URL $(BIN)/python manage.py migrate --noinput -v0
	env -u DATABASE_URL -u CELERY_BROKER_URL $(BIN)/python manage.py seed_demo --cdnow
	# A quick first model set (boosted trees and BG/NBD, the better of them serving; n-gram
	# sentiment); "Retrain now" on the Models page trains every family, the transformer included.
	env -u DATABASE_URL -u CELERY_BROKER_URL $(BIN)/python manage.py train --tenant demo --as-of $$(date -u +%F) --family bgnbd,tabular --sentiment-candidates ngram --sync
	env -u DATABASE_URL -u CELERY_BROKER_URL $(BIN)/python manage.py score --tenant demo --as-of $$(date -u +%F) --sync
	env -u DATABASE_URL -u CELERY_BROKER_URL $(BIN)/python manage.py train --tenant cdnow --as-of 1998-06-30 --family bgnbd,tabular --sync
	env -u DATABASE_URL -u CELERY_BROKER_URL $(BIN)/python manage.py score --tenant cdnow --as-of 1998-06-30 --sync
	@echo ""
	@echo "  Open http://$(HOST):$(PORT)/  and log in as  demo / demo12345"
	@echo ""
	# DEBUG stays off, so a wrong URL shows the app's 404 page, not Django's list of every
	# route; WhiteNoise serves the collected static files.
	env -u DATABASE_URL -u CELERY_BROKER_URL $(BIN)/python manage.py collectstatic --noinput -v0
	env -u DATABASE_URL -u CELERY_BROKER_URL -u DEBUG $(BIN)/python manage.py runserver $(HOST):$(PORT)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/bandit -q -c pyproject.toml -r clmsite customers modeling campaigns

# Known vulnerabilities in the pinned requirements (asks PyPI's advisory database) and how
# many packages could really be checked: exit 1 on a vulnerability, 3 if some could not be.
audit: setup
	$(BIN)/python .ci/audit.py

test: setup lint
	DB_CONN_MAX_AGE=0 DATABASE_URL=$(TEST_DATABASE_URL) CELERY_BROKER_URL=$(TEST_BROKER_URL) CACHE_URL=$(TEST_CACHE_URL) \
		$(BIN)/python -m pytest -q -p tests.xdist_services -n $(TEST_WORKERS) --dist worksteal --durations=25 $(PYTEST_ARGS)

run: setup
	$(BIN)/python manage.py runserver $(HOST):$(PORT)

worker: setup
	$(BIN)/celery -A clmsite worker -Q default,gpu --loglevel=INFO

bench-import: setup
	$(BIN)/python benchmarks/import_orders.py

clean:
	rm -rf $(VENV) var/*.sqlite3* var/uploads var/staticfiles
