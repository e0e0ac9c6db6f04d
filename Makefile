# The two commands of the README:
#   make demo   - set up .venv if needed, then run the pipeline on a bundled default
#   make test   - set up .venv if needed, then run the whole test suite (slow tests included)
VENV ?= .venv
PY := $(VENV)/bin/python
export DS_ACCELERATOR ?= $(if $(shell command -v nvidia-smi 2>/dev/null),,cpu)

.PHONY: setup demo test test-fast bench

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml jobs/setup_venv.sh
	bash jobs/setup_venv.sh $(VENV)

demo: setup
	$(VENV)/bin/reddit-pretrain pipeline

test: setup
	$(PY) -m pytest

test-fast: setup
	$(PY) -m pytest -m "not slow"

bench: setup
	$(PY) benchmarks/bench_ingest.py
