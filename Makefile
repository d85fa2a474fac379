# One place for the commands README.md, .ci/run and contributors use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup servers engines demo test lint typecheck check bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "rfobs needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The end-to-end tests start real Prometheus and Redis servers (Debian packages) on 127.0.0.1, and render the
# load-test HTML report in headless Chromium.
servers:
	@command -v prometheus >/dev/null && command -v promtool >/dev/null && command -v redis-server >/dev/null \
		&& command -v chromium >/dev/null || { \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends \
			prometheus redis-server chromium; }

# The OpenTelemetry Collector (otelcol-rfobs) and Jaeger v2 for the stack's end-to-end tests, built from their Go
# modules into a cache outside the repository (RFOBS_ENGINES_DIR, default ~/.cache/rfobs/engines). Minutes on a
# fresh machine, about a second when nothing changed.
engines:
	collector/build-engines.sh >/dev/null

demo: setup
	$(BIN)/rfobs demo

# coverage runs pytest (not pytest-cov): rfobs.testing loads as a pytest plugin, which imports rfobs before
# pytest-cov would start measuring.
test: setup servers engines
	$(BIN)/coverage run -m pytest
	$(BIN)/coverage report --fail-under=88

lint: setup
	$(BIN)/ruff check rfobs tests benchmarks
	$(BIN)/ruff format --check rfobs tests benchmarks

typecheck: setup
	$(BIN)/pyright

check: lint typecheck test

bench: setup
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	$(BIN)/python benchmarks/bench_startup.py
	$(BIN)/python benchmarks/overhead.py
	$(BIN)/python benchmarks/bench_shutdown.py
	$(BIN)/python benchmarks/perf_harness.py
	$(BIN)/python benchmarks/bench_fleet.py

clean:
	rm -rf $(VENV) .rfobs .pytest_cache .ruff_cache .coverage
