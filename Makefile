# The two set-up commands of the README. Each one creates .venv if needed,
# installs the project into it, then runs the demo or the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export KEDRO_DISABLE_TELEMETRY ?= 1

.PHONY: demo test jupyter install install-test install-notebook install-bench bench-quality bench-scale bench-serving install-docs screenshots

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .

install-test: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test]"

demo: install
	$(BIN)/kedro run

install-notebook: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[notebook]"

# JupyterLab with the project's kernel (catalog, context, session, pipelines loaded).
jupyter: install-notebook
	$(BIN)/kedro jupyter lab

test: install-test
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Benchmarks (not part of the tests): they print figures and write
# benchmarks/results/*.{json,md}. See README, "Performance".
MOVIELENS_DIR ?= ../shared/data/ml-100k
SIZES ?= demo,1.15M-bx,5M-bx

install-bench: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[bench]"

bench-quality: install-bench
	MOVIELENS_DIR=$(MOVIELENS_DIR) $(BIN)/python benchmarks/movielens_quality.py

bench-scale: install-bench
	$(BIN)/python benchmarks/scale.py --sizes $(SIZES)

# After a training run (make demo): load time and latency of the served champion,
# by id and by a 20-book history, beside a no-op model served the same way.
bench-serving: install-bench
	$(BIN)/python benchmarks/serving.py

# After a run (make demo): docs/images/mlflow_runs.png and kedro_viz.png, taken
# in headless Chromium (Debian: apt-get install chromium) driven by Playwright.
install-docs: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[docs]"

screenshots: install-docs
	$(BIN)/python docs/screenshots.py
