# Quick start on a fresh machine: `make demo` (synthetic data -> training -> metrics and a plot) and `make test`.
# Both create .venv and install adplg on first use. TORCH picks the torch build: the default pins the CPU wheel
# this project is tested with; `make demo TORCH=torch` takes the newest (CUDA) build from PyPI.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: demo test install

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $@

demo: install
	$(BIN)/adplg demo

test: install
	$(BIN)/python -m pytest -q
