# make book: set-up, execute every notebook on the default backend, build the HTML book.
# make test: set-up, then the whole test suite.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: setup setup-test setup-kind book book-kind node-image test lint bench clean sweep

setup:
	@bash scripts/setup.sh

# The tests also open the built book in headless Chromium, and run kind for real on a Docker Engine of
# kindlab's own (Debian's dockerd in namespaces of its own) with kindlab's node image (debootstrap).
setup-test:
	@bash scripts/setup.sh --kind chromium docker.io busybox-static debootstrap

# kind, Debian's Docker Engine and debootstrap: what the kind backend needs where no Docker runs.
setup-kind:
	@bash scripts/setup.sh --kind docker.io busybox-static debootstrap

# kindlab's kind node image, made on this machine (cached: made again only when its inputs change).
node-image: setup-kind
	$(BIN)/kindlab build node-image

# On failure, the failing cells' tracebacks (jupyter-book's reports) are printed last, where a log's tail shows them.
book: setup
	$(BIN)/jupyter-book build . --all --builder html --warningiserror --keep-going || { \
	  for f in $$(find _build/html/reports -name '*.log' 2>/dev/null); do echo "== $$f"; tail -n 25 "$$f"; done; \
	  exit 1; }
	@echo "The book: $(abspath _build/html/index.html)"

# The book on kind: every notebook run on a kind cluster (kindlab-cni where helm is not installed), into _build/kind.
book-kind: setup-kind
	KINDLAB_BACKEND=kind $(BIN)/jupyter-book build . --all --builder html --warningiserror --keep-going \
	  --path-output _build/kind || { \
	  for f in $$(find _build/kind/_build/html/reports -name '*.log' 2>/dev/null); do echo "== $$f"; tail -n 25 "$$f"; done; \
	  exit 1; }
	@echo "The book on kind: $(abspath _build/kind/_build/html/index.html)"

# mypy: strict on kindlab/model, kindlab/iptables and kindlab/cluster.py, the rest checked plainly (pyproject.toml);
# pytest runs whatever mypy says, and either failing fails the target.
test: setup-test book book-kind
	$(BIN)/ruff check .
	@rc=0; $(BIN)/python -m mypy || rc=1; $(BIN)/python -m pytest || rc=1; exit $$rc

lint: setup
	$(BIN)/ruff check .
	$(BIN)/python -m mypy

bench: setup
	@failed=""; for b in benchmarks/*.py; do echo "== $$b"; $(BIN)/python $$b || failed="$$failed $$b"; done; \
	  [ -z "$$failed" ] || { echo "missed their goals:$$failed"; exit 1; }

sweep: setup
	$(BIN)/kindlab delete clusters --all

clean:
	rm -rf _build .pytest_cache .ruff_cache
