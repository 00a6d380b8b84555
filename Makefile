# The two commands of the README: `make demo` and `make test`. Each creates .venv by itself.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow lint clean gpu-check

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt -r requirements-dev.txt
	touch $(STAMP)

demo: $(STAMP)
	$(PY) app/demo.py demo-run

lint: $(STAMP)
	$(PY) -m ruff check app tests bench

test: $(STAMP) lint
	$(PY) -m pytest -q -m "not slow" tests

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow tests

# On a machine with CUDA (no Docker needed): .venv's python when there is one, else $(PYTHON) with the
# requirements already installed (a GPU machine's own torch). Exits non-zero without CUDA.
GPU_PY ?= $(if $(wildcard $(PY)),$(PY),$(PYTHON))
gpu-check:
	$(GPU_PY) tests/gpu_check.py $(GPU_CHECK_ARGS)

clean:
	rm -rf demo-run .pytest_cache .ruff_cache
