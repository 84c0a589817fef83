# tickwire: `make run` starts the server, `make test` runs every check.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000
DATA ?= ./data

.PHONY: venv run test lint types tests bench bench-quick bench-deps clean browser vendor-js

# $(call apt-install,COMMAND,PACKAGES): unless COMMAND is on the PATH, install the Debian/Ubuntu
# PACKAGES with apt-get (as root, from the network), refreshing the package lists if that fails.
apt-install = command -v $(1) >/dev/null || { apt-get install -y --no-install-recommends $(2) \
	|| { apt-get update && apt-get install -y --no-install-recommends $(2); }; }

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/tickwire serve --host $(HOST) --port $(PORT) --data-dir $(DATA) $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

types: $(STAMP)
	$(BIN)/mypy

tests: $(STAMP) browser bench-deps
	$(BIN)/pytest

test: lint types tests

# Every benchmark workload (about 17 min), then BENCHMARKS.md from their results (bench/results/).
bench: $(STAMP) bench-deps
	$(BIN)/python -m bench.ingest_bench
	$(BIN)/python -m bench.store_bench
	$(BIN)/python -m bench.rest_bench
	$(BIN)/python -m bench.encode_bench
	$(BIN)/python -m bench.fanout_bench
	$(BIN)/python -m bench.report

# A short run of each (about 3 min): results and a report in bench/results/quick/, not committed.
bench-quick: $(STAMP) bench-deps
	$(BIN)/python -m bench.ingest_bench --quick
	$(BIN)/python -m bench.store_bench --quick
	$(BIN)/python -m bench.rest_bench --quick
	$(BIN)/python -m bench.encode_bench --quick
	$(BIN)/python -m bench.fanout_bench --quick
	$(BIN)/python -m bench.report --results bench/results/quick --out bench/results/quick/BENCHMARKS.md

# The benchmarks' tools: wrk (rest_bench), node and the Node `ws` peers (fanout_bench). `make
# test` runs every benchmark at a tiny size (tests/test_bench_smoke.py), so it needs them too.
PEERS_LOCK := bench/fanout_peers/node_modules/.package-lock.json

bench-deps: $(PEERS_LOCK)
	@$(call apt-install,wrk,wrk)

$(PEERS_LOCK): bench/fanout_peers/package-lock.json
	@$(call apt-install,npm,nodejs npm)
	npm ci --prefix bench/fanout_peers --no-audit --no-fund

# The dashboard test drives the system Chromium (Debian's package; Playwright's own download
# cannot work offline). After bench-deps, never beside it: two apt-get runs at once (make -j)
# would fail on apt's lock.
browser: bench-deps
	@$(call apt-install,chromium,chromium)

# Refresh the dashboard's vendored JavaScript from the versions web/package.json pins.
vendor-js:
	npm ci --prefix web --no-audit --no-fund
	cp web/node_modules/lightweight-charts/dist/lightweight-charts.standalone.production.js \
		src/tickwire/dashboard/static/vendor/
	cp web/node_modules/lightweight-charts/LICENSE \
		src/tickwire/dashboard/static/vendor/LICENSE-lightweight-charts.txt

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
