# BreastFusion: `make demo` runs the main job, `make test` runs the test suite.
# Both create or update the virtual environment in .venv first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: env demo test bench clean

env: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test,tracking]"
	touch $(STAMP)

demo: env
	$(PY) -m BreastFusionLib.demo

test: env
	$(PY) -m pytest -q

bench: env
	$(PY) training/bench_networks.py

clean:
	rm -rf $(VENV) out runs
