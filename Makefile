# The two commands a newcomer needs: `make run` and `make test`. Everything else is set-up.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
LOCK   := requirements/dev.lock
STAMP  := $(VENV)/.installed

.PHONY: run test lint typecheck unit system-deps bench clean

# Create the venv and install the locked dependencies (re-run only when the lock changes).
$(STAMP): $(LOCK) pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --require-hashes -r $(LOCK)
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

# Start the demo: the server (API and web UI) with a mixed simulated fleet on SQLite.
run: $(STAMP)
	$(BIN)/bambufarm demo

# Debian packages the tests talk to (curl, mosquitto-clients, ...); see scripts/system-deps.sh.
system-deps:
	scripts/system-deps.sh

lint: $(STAMP)
	$(BIN)/ruff format --check src tests bench
	$(BIN)/ruff check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest tests/unit -q

test: $(STAMP) system-deps lint typecheck
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/python -m bench.protocol

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
