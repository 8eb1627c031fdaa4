# ubap: the two commands are `make up` and `make test` (see README.md).
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
UBAP_DATA_DIR ?= $(CURDIR)/data
export DAGSTER_HOME ?= $(UBAP_DATA_DIR)/dagster
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
API_PORT ?= 8000
DASHBOARD_PORT ?= 8501
DAGSTER_PORT ?= 3000

.PHONY: help install up materialize serve test bench lint clean \
	install-scale up-scale pg-start pg-stop clean-scale

help:
	@echo "make up     set up, serve Dagster UI :$(DAGSTER_PORT), API :$(API_PORT), dashboard :$(DASHBOARD_PORT), and run the whole graph (RUN_CONFIG=file.yaml for run config)"
	@echo "make test   set up (with Java, PostgreSQL and the scale extra) and run the tests"
	@echo "make up-scale  make up on the Spark engine with the Dagster instance on PostgreSQL (data/scale)"
	@echo "make pg-start / pg-stop  start / stop the instance's private PostgreSQL (UBAP_PG_HOST:UBAP_PG_PORT)"
	@echo "make bench  run the benchmarks under bench/ (prints figures)"
	@echo "make clean  remove data/ (warehouse, snapshots, Dagster instance); keeps .venv"

# A fresh machine gets .venv and every dependency; an installed one skips this in a second.
$(INSTALLED): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: '$(PYTHON)' not found. Install Python 3.11 or newer, or run 'make PYTHON=/path/to/python3.11 ...'." >&2; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' || { echo "error: ubap needs Python >= 3.11; '$(PYTHON)' is $$($(PYTHON) -V 2>&1). Run 'make PYTHON=python3.11 ...'." >&2; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { echo "error: '$(PYTHON) -m venv' failed: install the venv module (Debian: apt-get install python3-venv)." >&2; exit 1; }
	# torch first, pinned to the CPU build (constraints.txt says why), then the project.
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt torch==2.13.0
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev]"
	@touch $@

install: $(INSTALLED)

# The instance's configuration (make up-scale passes the PostgreSQL one).
DAGSTER_YAML ?= dagster.yaml
$(DAGSTER_HOME)/dagster.yaml: $(DAGSTER_YAML)
	@mkdir -p $(DAGSTER_HOME)
	cp $(DAGSTER_YAML) $@

DAGSTER_URL := http://127.0.0.1:$(DAGSTER_PORT)
DAGSTER_LOG ?= $(DAGSTER_HOME)/dagster-dev.log
# `make up RUN_CONFIG=run.yaml` (or make materialize): run config for the run, as in the launchpad.
RUN_ARGS = $(if $(RUN_CONFIG),--config $(RUN_CONFIG))

# The whole graph over the full history as one queued run of the instance, followed in the
# terminal; starts a `dagster dev` for the run's duration unless one answers at DAGSTER_URL.
materialize: $(INSTALLED) $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/python -m ubap_assets.materialize --start-dagster --url $(DAGSTER_URL) $(RUN_ARGS)

# Dagster UI (webserver + daemon, so the run queue, the schedule and the sensors run), API,
# dashboard. Each runs in its own process group; Ctrl-C (or any one of them exiting) stops all
# three. With FOLLOW_RUN=1 (make up) dagster dev logs to DAGSTER_LOG and ubap_assets.materialize
# queues the whole-history run through the webserver and prints one line per finished step.
serve: $(INSTALLED) $(DAGSTER_HOME)/dagster.yaml
	@echo "Dagster UI  $(DAGSTER_URL)"
	@echo "API         http://127.0.0.1:$(API_PORT)/docs"
	@echo "Dashboard   http://127.0.0.1:$(DASHBOARD_PORT)"
	@set -m; pids=""; follower=""; \
	stop() { trap - INT TERM; \
		if [ -n "$$follower" ]; then kill -INT -$$follower 2>/dev/null; wait $$follower; fi; \
		for p in $$pids; do kill -INT -$$p 2>/dev/null; done; wait; }; \
	trap 'stop; exit 130' INT TERM; \
	if [ -n "$(FOLLOW_RUN)" ]; then \
		echo "Dagster log $(DAGSTER_LOG) (the previous one: .1)"; \
		if [ -f "$(DAGSTER_LOG)" ]; then mv -f "$(DAGSTER_LOG)" "$(DAGSTER_LOG).1"; fi; \
		$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p $(DAGSTER_PORT) >"$(DAGSTER_LOG)" 2>&1 & \
	else \
		$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p $(DAGSTER_PORT) & \
	fi; \
	dagster=$$!; pids="$$pids $$!"; \
	$(BIN)/uvicorn ubap_api.main:app --host 127.0.0.1 --port $(API_PORT) & pids="$$pids $$!"; \
	$(BIN)/streamlit run ubap_dashboard/streamlit_app.py --server.address 127.0.0.1 \
		--server.port $(DASHBOARD_PORT) --server.headless true & pids="$$pids $$!"; \
	if [ -n "$(FOLLOW_RUN)" ]; then \
		$(BIN)/python -m ubap_assets.materialize --url $(DAGSTER_URL) $(RUN_ARGS) \
			--api-url http://127.0.0.1:$(API_PORT)/docs \
			--dashboard-url http://127.0.0.1:$(DASHBOARD_PORT) & follower=$$!; \
	fi; \
	while :; do \
		wait -n; status=$$?; down=""; \
		for p in $$pids; do kill -0 $$p 2>/dev/null || down=$$p; done; \
		[ -z "$$down" ] || break; \
		follower=""; \
	done; \
	echo "a service exited ($$status): stopping the others" >&2; \
	if [ -n "$(FOLLOW_RUN)" ] && [ "$$down" = "$$dagster" ]; then tail -n 15 "$(DAGSTER_LOG)" >&2; fi; \
	stop; exit $$status

# Serve, and meanwhile run the whole graph through the instance's queue (see materialize).
up: FOLLOW_RUN := 1
up: serve

# Debian's chromium drives the real-browser dashboard test.
/usr/bin/chromium:
	@command -v apt-get >/dev/null 2>&1 || { echo "error: the browser test needs Chromium at /usr/bin/chromium: install it with your package manager." >&2; exit 1; }
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null

# The whole suite, the Spark engine and the PostgreSQL instance (marker scale) included.
test: install-scale /usr/bin/chromium
	$(BIN)/python -m pytest

bench: $(INSTALLED)
	@for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

lint: $(INSTALLED)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf data/warehouse.duckdb* data/snapshots data/dagster data/models

# ---- The scale-out path (README, "Scaling out"): the Spark engine and the Dagster instance on
# PostgreSQL. Everything lives under SCALE_DATA_DIR; `make up` never needs any of it.
SCALE_DATA_DIR := $(UBAP_DATA_DIR)/scale
SCALE_INSTALLED := $(VENV)/.installed-scale
PG_PASSWORD_FILE := $(SCALE_DATA_DIR)/pg_password
# 0: make up-scale uses the PostgreSQL that UBAP_PG_* point at instead of starting the private one.
PG_PRIVATE ?= 1

# The instance database's address for every scale target and what it starts (the same defaults
# as ubap_assets/scale/postgres.py; dagster_postgres.yaml reads them from the environment).
install-scale up-scale pg-start pg-stop clean-scale: export UBAP_PG_HOST ?= 127.0.0.1
install-scale up-scale pg-start pg-stop clean-scale: export UBAP_PG_PORT ?= 5433
install-scale up-scale pg-start pg-stop clean-scale: export UBAP_PG_USER ?= ubap
install-scale up-scale pg-start pg-stop clean-scale: export UBAP_PG_DB ?= dagster

# The password only ever comes from the environment: when UBAP_PG_PASSWORD is unset, a random one
# is generated once into PG_PASSWORD_FILE (mode 0600) and exported from there.
WITH_PG_PASSWORD = if [ -z "$$UBAP_PG_PASSWORD" ]; then \
		if [ ! -s "$(PG_PASSWORD_FILE)" ]; then \
			mkdir -p "$(SCALE_DATA_DIR)" && (umask 077 && $(BIN)/python -c \
				'import secrets; print(secrets.token_urlsafe(24))' >"$(PG_PASSWORD_FILE)") || exit 1; \
		fi; \
		UBAP_PG_PASSWORD="$$(cat "$(PG_PASSWORD_FILE)")"; export UBAP_PG_PASSWORD; \
	fi

# The scale extra (pyspark, sqlglot, dagster-postgres, psycopg2) on top of the base install.
$(SCALE_INSTALLED): $(INSTALLED) pyproject.toml constraints.txt
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev,scale]"
	@touch $@

# Java 17 (Spark) and PostgreSQL (the instance) from Debian, each only when it is missing.
install-scale: $(SCALE_INSTALLED)
	@missing=""; \
	java_major=$$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n 1); \
	if [ -z "$$java_major" ] || [ "$$java_major" -lt 17 ]; then missing="$$missing openjdk-17-jre-headless"; fi; \
	compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || command -v initdb >/dev/null \
		|| missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
		command -v apt-get >/dev/null 2>&1 || { echo "error: the scale path needs$$missing (Java 17 or newer, PostgreSQL's server): install them with your package manager." >&2; exit 1; }; \
		sudo=""; [ "$$(id -u)" = 0 ] || sudo="sudo"; \
		echo "installing$$missing (apt-get)"; \
		$$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq \
			--no-install-recommends $$missing >/dev/null \
			|| { echo "error: apt-get install$$missing failed (see above): run it as root, or install them yourself." >&2; exit 1; }; \
	fi

# The instance's private PostgreSQL under SCALE_DATA_DIR/postgres, listening on
# UBAP_PG_HOST:UBAP_PG_PORT (127.0.0.1:5433); start is a no-op when it already runs.
pg-start: $(INSTALLED)
	@$(WITH_PG_PASSWORD); $(BIN)/python -m ubap_assets.scale.postgres start --data-dir "$(UBAP_DATA_DIR)"

pg-stop: $(INSTALLED)
	@$(BIN)/python -m ubap_assets.scale.postgres stop --data-dir "$(UBAP_DATA_DIR)"

# make up on the scale path: PostgreSQL started (PG_PRIVATE=1) and answering, then the serve
# recipe with the Spark engine, the data under SCALE_DATA_DIR and the PostgreSQL instance.
up-scale: install-scale $(if $(filter 1,$(PG_PRIVATE)),pg-start)
	@$(WITH_PG_PASSWORD); $(BIN)/python -m ubap_assets.scale.postgres check
	@$(WITH_PG_PASSWORD); $(MAKE) --no-print-directory serve FOLLOW_RUN=1 UBAP_ENGINE=spark \
		UBAP_DATA_DIR="$(SCALE_DATA_DIR)" DAGSTER_HOME="$(SCALE_DATA_DIR)/dagster" \
		DAGSTER_YAML=ubap_assets/scale/dagster_postgres.yaml

# Stop the private PostgreSQL and remove everything the scale path wrote.
clean-scale: pg-stop
	rm -rf "$(SCALE_DATA_DIR)"
