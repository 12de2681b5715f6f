# One entry point for people and CI. Every target creates the virtualenv it needs.
# The demo installs keystead and its runtime dependencies only; the tests add their extras.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_STAMP := $(VENV)/.installed-demo
TEST_STAMP := $(VENV)/.installed-test
DEMO_ARGS ?=

.PHONY: demo test lint bench clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "keystead needs Python 3.11 or newer (set PYTHON=python3.12 ...)")'
	@echo "==> creating the virtualenv $(VENV)"
	$(PYTHON) -m venv $(VENV)

# The test install holds everything the demo needs: after it, the demo installs nothing.
# --no-compile: Python compiles what the demo imports when it first runs, not all of botocore
# and the rest at install time (a third of the install's time).
$(DEMO_STAMP): pyproject.toml | $(BIN)/python
	@if [ -f $(TEST_STAMP) ] && [ $(TEST_STAMP) -nt pyproject.toml ]; then \
	  echo "==> keystead is installed in $(VENV) (with the test extras)"; \
	else \
	  echo "==> installing keystead and its runtime dependencies into $(VENV) (no test tools)"; \
	  $(BIN)/python -m pip install --disable-pip-version-check --no-compile -e . ; \
	fi
	@touch $@

$(TEST_STAMP): pyproject.toml | $(BIN)/python
	@echo "==> installing keystead with the test extras into $(VENV)"
	$(BIN)/python -m pip install --disable-pip-version-check -q -e '.[test]'
	@touch $@

demo: $(DEMO_STAMP)
	@echo "==> starting the demo gateway (make demo DEMO_ARGS='--port 8081 --keep' to change it)"
	$(BIN)/keystead demo $(DEMO_ARGS)

lint: $(TEST_STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

bench: $(TEST_STAMP)
	$(BIN)/python -m pip install -q -e '.[bench]'
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
