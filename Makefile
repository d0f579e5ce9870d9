# modelyard — every set-up step lives here. `make demo` and `make test` are the two
# commands a newcomer needs; both install what is missing first.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TOOLS := .tools/bin
HELM := $(TOOLS)/helm
export PATH := $(CURDIR)/$(BIN):$(CURDIR)/$(TOOLS):$(PATH)
# Single-threaded math libraries: two cores are shared by servers, workers and tests.
export OMP_NUM_THREADS ?= 1

PYTEST_ARGS ?=

.PHONY: help install install-production test test-fast lint typecheck demo demo-festival demo-graduation bench bench-ingest bench-scale up down browser prometheus clean constraints

help:
	@echo "make demo       run the whole chain on embedded defaults"
	@echo "make test       install what is missing, then ruff, mypy and every test tier"
	@echo "make test-fast  the fast tiers only (unit, data, dags, chart)"
	@echo "make bench      serving against MLServer, mlflow models serve and a bare ASGI floor; batch scoring; online lookups"
	@echo "make bench-ingest  ingest of a >= 1 GB CSV (MB=1024) against pyarrow.csv.read_csv and pandas.read_csv"
	@echo "make bench-scale  the chain for PAIRS (family, region) pairs on the real stack (default 1000; PostgreSQL)"
	@echo "make up         start MLflow + Airflow + serving without triggering anything"
	@echo "make demo-festival  second act: festival drift, retrain, canary under load"
	@echo "make demo-graduation  third act: the new market's data grows, its own model graduates by canary"
	@echo "make down       stop what make demo started"

install: $(STAMP) $(HELM)

$(STAMP): setup.cfg constraints.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev]"
	@touch $@

$(HELM): | $(STAMP)
	$(BIN)/python -m modelyard.deploy.rollout.helmbin install --dest $(TOOLS)

# Regenerate the pinned constraints from the working environment (after changing deps).
constraints:
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^-e ' > constraints.txt
	$(BIN)/python .ci/runtime_constraints.py > constraints-runtime.txt

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: install
	$(BIN)/mypy

# Debian's chromium + chromedriver for the browser tests (installed only when missing).
browser:
	bash .ci/install-browser.sh

# Debian's prometheus (promtool) for the chart's alert tests (installed only when missing).
prometheus:
	bash .ci/install-prometheus.sh

# The production tier's S3/Celery/Redis stack, pinned, without pip's resolver (see setup.cfg [cluster]).
PRODUCTION_STAMP := $(VENV)/.production-installed
install-production: $(PRODUCTION_STAMP)
$(PRODUCTION_STAMP): tests/production/requirements.txt | $(STAMP)
	$(BIN)/python -m pip install -q --no-deps -r tests/production/requirements.txt
	@touch $@

# The fast tiers in two xdist workers, then the tiers that start servers (their own Airflow,
# MLflow and serving processes) in two workers too, a whole file at a time on one worker: a
# file's module fixtures start its stack once, and much of their time is spent waiting on
# schedulers and servers, so two files overlap well on two cores (ADR 0025). The longest files go
# first and the e2e files that share one chain run as one unit (tests/conftest.py, ADR 0029).
FAST_TIERS := unit or data or dags or chart or model
test: lint typecheck browser prometheus install-production
	$(BIN)/pytest -n 2 -m "$(FAST_TIERS)" $(PYTEST_ARGS)
	$(BIN)/pytest -n 2 --dist loadfile -m "not ($(FAST_TIERS))" $(PYTEST_ARGS)

test-fast: install prometheus
	$(BIN)/pytest -m "unit or data or dags or chart" $(PYTEST_ARGS)

demo: install
	$(BIN)/modelyard demo

demo-festival: install
	$(BIN)/modelyard demo-festival

demo-graduation: install
	$(BIN)/modelyard demo-graduation

up: install
	$(BIN)/modelyard up

# MLServer (the KServe v2 reference server) in its own environment, for the side-by-side serving figures.
MLSERVER_VENV := .bench/mlserver
$(MLSERVER_VENV)/bin/mlserver:
	$(PYTHON) -m venv $(MLSERVER_VENV)
	$(MLSERVER_VENV)/bin/pip install -q mlserver==1.7.1 mlserver-xgboost==1.7.1 'uvloop<0.22'

# KServe's Python model server in its own environment, serving the same model through tests/bench/kserve_model.py.
KSERVE_VENV := .bench/kserve
$(KSERVE_VENV)/installed:
	$(PYTHON) -m venv $(KSERVE_VENV)
	$(KSERVE_VENV)/bin/pip install -q 'kserve==0.21.*' xgboost 'uvloop<0.22'
	touch $@

bench: install $(MLSERVER_VENV)/bin/mlserver $(KSERVE_VENV)/installed
	$(BIN)/python tests/bench/serving.py --mlserver $(MLSERVER_VENV)/bin/mlserver --kserve $(KSERVE_VENV)/bin/python
	$(BIN)/python tests/bench/batch_scoring.py --rows 1000000
	$(BIN)/python tests/bench/online.py

# The ingest benchmark (not a test): a CSV of MB megabytes in a temporary folder, read by the data
# stage's streaming ingest and by pyarrow/pandas alone; the table goes to docs/benchmarks.md. Take it
# on a quiet machine.
MB ?= 1024
bench-ingest: install
	$(BIN)/python tests/bench/ingest.py --mb $(MB) --write

# The scale benchmark (not a test): PAIRS pairs through the real Airflow + MLflow. Airflow's
# metadata goes to a fresh database on the local PostgreSQL (AIRFLOW_DB=sqlite for the dev
# stack's SQLite, which stops the scheduler with "database is locked" at hundreds of pairs).
PAIRS ?= 1000
AIRFLOW_DB ?= postgres
bench-scale: install
	$(BIN)/python tests/bench/scale.py --pairs $(PAIRS) --airflow-db $(AIRFLOW_DB)

down: install
	$(BIN)/modelyard down

clean:
	rm -rf .modelyard .demo test-results
