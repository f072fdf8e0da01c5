# resnorm: `make test` and `make demo` each build .venv on first use (python3 -m venv, the CPU
# build of torch 2.13.0, the package with its dev extras).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: venv test lint demo bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

lint: venv
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/mypy src

test: lint
	$(BIN)/python -m pytest

demo: venv
	$(BIN)/resnorm demo

# Speed against a minimal baseline, x-transformers and Hugging Face; writes docs/performance.md.
bench: venv
	$(BIN)/python -m pip install -q -e ".[bench]"
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
