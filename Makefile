# The two set-up commands of the README. Each one creates .venv if needed,
# installs the project into it, then runs the demo or the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export KEDRO_DISABLE_TELEMETRY ?= 1

.PHONY: demo test install install-test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .

install-test: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test]"

demo: install
	$(BIN)/kedro run

test: install-test
	$(BIN)/python -m pytest $(PYTEST_ARGS)
