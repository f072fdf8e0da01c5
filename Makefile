# resnorm: `make test` and `make demo` each build .venv on first use (python3 -m venv, the CPU
# build of torch 2.13.0, the package with its dev extras).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: venv test lint chromium demo bench clean

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

# The report tests render the HTML report in headless Chromium (Debian's package), as .ci/run
# does: installed here when missing and we are root, else the exact command to run first.
chromium:
	@if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1 \
		&& ! command -v google-chrome >/dev/null 2>&1; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "make test: installing chromium (apt-get) for the report tests"; \
			export DEBIAN_FRONTEND=noninteractive; \
			apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
		else \
			echo "make test: the report tests need Chromium; install it first:" \
				"sudo apt-get install -y chromium" >&2; \
			exit 1; \
		fi; \
	fi

test: lint chromium
	$(BIN)/python -m pytest

demo: venv
	$(BIN)/resnorm demo

# Speed against a minimal baseline, x-transformers and Hugging Face; writes docs/performance.md.
bench: venv
	$(BIN)/python -m pip install -q -e ".[bench]"
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
