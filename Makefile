# geosearch. CI runs `make test` (through .ci/run); `make run` serves the embedded snapshot.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
# The local PostgreSQL servers of run-postgis and run-cluster listen below the ephemeral
# port range (32768-60999 on Linux): there, a client's outgoing connection may already hold
# the port and the server fails with "Address already in use". Set them on the command
# line: make run-postgis PG_PORT=25433.
PG_PORT ?= 25432
CLUSTER_PRIMARY_PORT ?= 25440
CLUSTER_REPLICA_PORTS ?= 25441 25442
FEED := data/feed/spaces.csv
SNAPSHOT := var/snapshot/spaces.parquet
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install lock static run snapshot test fuzz faults lint bench feed score postgis chromium prometheus \
  run-postgis pg-stop run-cluster cluster-stop clean

LOCK := requirements/constraints.txt
$(BIN)/geosearch: setup.cfg pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c $(LOCK) -e '.[dev]'
	touch $@

install: $(BIN)/geosearch static ## create .venv, install geosearch (dev extra) and the map's Leaflet at the versions of the lock

# Not through install: that would first install the old lock, which may conflict with the
# setup.cfg being locked. requirements/lock.py needs only the standard library and uv.
lock: ## compile the lock (requirements/constraints.txt) again from setup.cfg; LOCK_ARGS=--upgrade moves every pin to the newest that fits
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -c $(LOCK) uv
	$(BIN)/python requirements/lock.py $(LOCK_ARGS)

VENDOR := geosearch/static/vendor
$(VENDOR)/markercluster/leaflet.markercluster.js: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	mkdir -p $(VENDOR)/leaflet $(VENDOR)/markercluster
	cp -r node_modules/leaflet/dist/leaflet.js node_modules/leaflet/dist/leaflet.css \
	  node_modules/leaflet/dist/images node_modules/leaflet/LICENSE $(VENDOR)/leaflet/
	cp node_modules/leaflet.markercluster/dist/leaflet.markercluster.js \
	  node_modules/leaflet.markercluster/dist/MarkerCluster.css \
	  node_modules/leaflet.markercluster/dist/MarkerCluster.Default.css \
	  node_modules/leaflet.markercluster/MIT-LICENCE.txt $(VENDOR)/markercluster/

static: $(VENDOR)/markercluster/leaflet.markercluster.js ## Leaflet and Leaflet.markercluster from the npm registry into the package's static files

$(SNAPSHOT): $(FEED) | $(BIN)/geosearch
	$(BIN)/geosearch ingest $(FEED) --snapshot $(SNAPSHOT) --report var/ingest-report.json

snapshot: $(SNAPSHOT) ## build the embedded snapshot from the committed feed

run: install snapshot ## serve the snapshot on http://127.0.0.1:$(PORT) (gunicorn)
	$(BIN)/geosearch serve --snapshot $(SNAPSHOT) --port $(PORT)

postgis: ## install PostGIS for PostgreSQL 15 (and pgbouncer) when missing (Debian)
	@{ test -f /usr/share/postgresql/15/extension/postgis.control && \
	   test -x /usr/sbin/pgbouncer; } || \
	  { $(SUDO) apt-get update -qq && \
	    $(SUDO) apt-get install -y -qq postgresql-15-postgis-3 pgbouncer; }

chromium: ## install Debian's Chromium for the browser tests when missing
	@test -x /usr/bin/chromium || \
	  { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium; }

prometheus: ## install Debian's Prometheus for the metrics tests when missing
	@test -x /usr/bin/prometheus || \
	  { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq prometheus; }

test: install postgis chromium prometheus ## the whole suite, with its own throwaway PostGIS
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest -n 2 --dist loadgroup -p no:cacheprovider

fuzz: install postgis ## nightly-sized: schemathesis with many examples, hostile battery, faults
	GEOSEARCH_FUZZ_EXAMPLES=400 $(BIN)/pytest -n 2 -p no:cacheprovider \
	  tests/test_schemathesis.py tests/test_hostile.py tests/test_hostile_writes.py
	$(BIN)/python scripts/faults.py --clients 8 --seconds-between 10

faults: install postgis ## faults under load, the long form (kill, restart, outage, swap)
	$(BIN)/python scripts/faults.py --clients 8 --seconds-between 10

lint: install ## ruff, and mypy on geosearch/
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: install postgis snapshot ## every figure beside its floor, 5k and 1M -> docs/benchmarks.md
	@command -v wrk >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq wrk; }
	$(BIN)/python scripts/bench.py --out docs/benchmarks.md --servers $(BENCH_ARGS)

feed: install ## regenerate the raw feed (deterministic)
	$(BIN)/python scripts/generate_feed.py --out data/feed

score: install ## precision/recall of ingestion against the defect manifest
	$(BIN)/python scripts/score_ingest.py data/feed

run-postgis: install postgis ## local PostGIS under .pgdata on PG_PORT (25432), ingest, serve on $(PORT)
	@echo "run-postgis: PostgreSQL on 127.0.0.1:$(PG_PORT) (PG_PORT=...), the API on 127.0.0.1:$(PORT) (PORT=...)"
	$(BIN)/python -m geosearch.testing.pgcluster start .pgdata $(PG_PORT)
	$(BIN)/geosearch ingest $(FEED) --database postgresql+psycopg://postgres@127.0.0.1:$(PG_PORT)/geosearch --report var/ingest-report-pg.json
	$(BIN)/geosearch serve --database postgresql+psycopg://postgres@127.0.0.1:$(PG_PORT)/geosearch --port $(PORT)

pg-stop: ## stop the local PostGIS of run-postgis
	$(BIN)/python -m geosearch.testing.pgcluster stop .pgdata

CLUSTER_URL = postgresql+psycopg://postgres@127.0.0.1:$(1)/geosearch
run-cluster: install postgis ## a primary and two hot standbys (.pgcluster; CLUSTER_PRIMARY_PORT 25440, CLUSTER_REPLICA_PORTS 25441 25442), ingest, serve on $(PORT)
	@echo "run-cluster: primary on 127.0.0.1:$(CLUSTER_PRIMARY_PORT) (CLUSTER_PRIMARY_PORT=...), standbys on $(CLUSTER_REPLICA_PORTS) (CLUSTER_REPLICA_PORTS=...), the API on 127.0.0.1:$(PORT) (PORT=...)"
	$(BIN)/python -m geosearch.testing.pgcluster cluster-start .pgcluster $(CLUSTER_PRIMARY_PORT) $(CLUSTER_REPLICA_PORTS)
	$(BIN)/geosearch ingest $(FEED) --database $(call CLUSTER_URL,$(CLUSTER_PRIMARY_PORT)) --report var/ingest-report-cluster.json
	$(BIN)/geosearch serve --database $(call CLUSTER_URL,$(CLUSTER_PRIMARY_PORT)) \
	  $(foreach p,$(CLUSTER_REPLICA_PORTS),--replica $(call CLUSTER_URL,$(p))) --port $(PORT)

cluster-stop: ## stop the three servers of run-cluster
	$(BIN)/python -m geosearch.testing.pgcluster cluster-stop .pgcluster

clean:
	rm -rf var test-output .pytest_cache
