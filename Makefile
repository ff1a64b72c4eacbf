# drorch developer targets. `make test` is what CI runs (.ci/run).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck pytest bench sysdeps venv clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[dev]'
	@# libvirt-python is sdist-only; it builds against libvirt-dev (a system package).
	$(PIP) install -q -e '.[libvirt]' || { echo "libvirt-python failed to build; is libvirt-dev installed? (make sysdeps)"; exit 1; }
	touch $(STAMP)

venv: $(STAMP)

sysdeps:
	bash tests/install-system-packages.sh

demo: $(STAMP)
	bash lab/demo.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check drorch tests
	$(VENV)/bin/ruff format --check drorch tests

typecheck: $(STAMP)
	$(VENV)/bin/mypy --strict drorch

pytest: $(STAMP)
	$(VENV)/bin/pytest -q

test: sysdeps $(STAMP) lint typecheck pytest

bench: sysdeps $(STAMP)
	$(PY) -m tests.bench

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
