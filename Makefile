# drorch developer targets. `make test` is what CI runs (.ci/run).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# Two stamps, so `make demo` and `make test` each install what they need, in either order
# on a fresh machine: BASE is drorch + the [dev] tools (pure Python wheels; enough for the
# demo, lint and typecheck); FULL adds the [libvirt] extra, whose libvirt-python builds
# against libvirt-dev, a system package that `make sysdeps` installs first.
BASE := $(VENV)/.installed-base
STAMP := $(VENV)/.installed

.PHONY: demo demo-sysdeps test lint typecheck pytest bench sysdeps base venv clean
export VENV

$(BASE): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[dev]'
	touch $(BASE)

$(STAMP): $(BASE)
	@# libvirt-python is sdist-only; it builds against libvirt-dev (a system package).
	$(PIP) install -q -e '.[libvirt]' || { echo "libvirt-python failed to build; is libvirt-dev installed? (make sysdeps)"; exit 1; }
	touch $(STAMP)

base: $(BASE)

venv: $(STAMP)

# Everything the test suite needs (tests/system-packages.txt), as root.
sysdeps:
	bash tests/install-system-packages.sh tests/system-packages.txt

# What the simulated demo needs (lab/demo-packages.txt): it runs no hypervisor.
demo-sysdeps:
	bash tests/install-system-packages.sh lab/demo-packages.txt

# The real lab demo (`drorch lab demo`) when QEMU and libvirt can run here (root, network
# namespaces, qemu-system-x86 installable): lab/demo.sh then installs lab/lab-packages.txt
# and the [libvirt] extra itself. Otherwise it says why and runs the simulated story
# (demo-sysdeps + base). DRORCH_DEMO=lab|sim forces one.
demo:
	bash lab/demo.sh

lint: $(BASE)
	$(VENV)/bin/ruff check drorch tests
	$(VENV)/bin/ruff format --check drorch tests
	$(VENV)/bin/lint-imports

typecheck: $(BASE)
	$(VENV)/bin/mypy --strict drorch

pytest: $(STAMP)
	$(VENV)/bin/pytest -q -n 2 --dist loadgroup

test: sysdeps $(STAMP) lint typecheck pytest

bench: sysdeps $(STAMP)
	$(PY) -m tests.bench

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
