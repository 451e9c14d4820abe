# make book: set-up, execute every notebook on the default backend, build the HTML book.
# make test: set-up, then the whole test suite.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: setup setup-test book test lint bench clean sweep

setup:
	@bash scripts/setup.sh

# The tests also open the built book in headless Chromium, and run a Docker Engine of their own
# (tests/test_kind_docker.py: Debian's dockerd, and a busybox node image made from busybox-static).
setup-test:
	@bash scripts/setup.sh chromium docker.io busybox-static

# On failure, the failing cells' tracebacks (jupyter-book's reports) are printed last, where a log's tail shows them.
book: setup
	$(BIN)/jupyter-book build . --all --builder html --warningiserror --keep-going || { \
	  for f in $$(find _build/html/reports -name '*.log' 2>/dev/null); do echo "== $$f"; tail -n 25 "$$f"; done; \
	  exit 1; }
	@echo "The book: $(abspath _build/html/index.html)"

test: setup-test book
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check .

bench: setup
	@failed=""; for b in benchmarks/*.py; do echo "== $$b"; $(BIN)/python $$b || failed="$$failed $$b"; done; \
	  [ -z "$$failed" ] || { echo "missed their goals:$$failed"; exit 1; }

sweep: setup
	$(BIN)/kindlab delete clusters --all

clean:
	rm -rf _build .pytest_cache .ruff_cache
