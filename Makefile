# Quick start on a fresh machine: `make demo` (synthetic data -> training -> metrics and a plot) and `make test`.
# Both create .venv on first use: `make demo` installs only the base package (what the demo needs), `make test` adds
# the [test] extra (video, ONNX export, Ray, TensorBoard, Playwright, pytest). TORCH picks the torch build: the default
# pins the version this project is tested with; `make demo TORCH=torch` takes the newest. PyPI's Linux torch wheels
# bundle CUDA (several GB); TORCH_INDEX=https://download.pytorch.org/whl/cpu installs the CPU-only build instead.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
TORCH_INDEX ?=
BIN := $(VENV)/bin

.PHONY: demo test lint install install-test

install: $(VENV)/.installed-base

install-test: $(VENV)/.installed-test

$(VENV)/.installed-base: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH)"
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed-base
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $@

demo: install
	$(BIN)/adplg demo

lint: install-test
	$(BIN)/ruff check .
	$(BIN)/mypy

# the suite in one worker per core (`-n auto`; files stay whole on a worker), the slowest tests listed at the end
test: lint
	$(BIN)/python -m pytest -q -n auto --dist loadfile --durations=15
