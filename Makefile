# ezq: make demo | make test | make lint | make bench
# Each target makes the virtual environments it needs under .venv/.

SHELL := /bin/bash
# Each CPython 3.10-3.15 is taken from pyenv, else from .venv/cpython-X.Y (where
# .ci/run provisions 3.14 and 3.15 with .ci/debian-python), else from python3.X
# on the PATH. `make test` runs the tests on every one found, and names the others.
VERSIONS := 3.10 3.11 3.12 3.13 3.14 3.15
find_python = $(or $(shell p=$$(pyenv prefix $(1) 2>/dev/null) && echo $$p/bin/python),$(wildcard .venv/cpython-$(1)/bin/python),$(shell command -v python$(1)))
FOUND := $(foreach v,$(VERSIONS),$(if $(call find_python,$(v)),$(v)))
PYTHONS := $(or $(foreach v,$(FOUND),$(call find_python,$(v))),python3)
PYTHON := $(firstword $(shell command -v python3) python3)
TEST_DEPS := dill pytest pytest-timeout pytest-xdist tqdm loky distributed
NODILL_DEPS := pytest pytest-timeout pytest-xdist
LINT_DEPS := dill pytest mypy ruff pyright
PACKAGE_DEPS := build twine mypy pyright pytest pytest-timeout pytest-xdist
PIP := -m pip install --quiet --disable-pip-version-check

# $(call venv,PYTHON,NAME,DEPS): make .venv/NAME with DEPS unless it has them already.
# Debian's interpreters have no ensurepip: their venvs get pip from the wheel
# that Debian keeps beside the interpreter (usr/share/python-wheels).
define venv
	@[ -x .venv/$(2)/bin/python ] || $(1) -m venv .venv/$(2) 2>/dev/null || { \
		$(1) -m venv --clear --without-pip .venv/$(2) && \
		.venv/$(2)/bin/python "$$(ls "$$(dirname "$$(readlink -f $(1))")"/../share/python-wheels/pip-*.whl | tail -n 1)/pip" \
			install --quiet --disable-pip-version-check pip; }
	@[ "$$(cat .venv/$(2)/.deps 2>/dev/null)" = "$(3)" ] || \
		{ .venv/$(2)/bin/python $(PIP) $(3) && echo "$(3)" > .venv/$(2)/.deps; }
endef

.PHONY: demo test lint bench package test-nodill
demo:  ## run every example in the README
	$(call venv,$(PYTHON),demo,$(TEST_DEPS))
	.venv/demo/bin/python test_ezq.py

test:  ## everything: the tests on each Python, without dill, and the package
	@set -e; pythons="$(PYTHONS)"; count=$$(echo $$pythons | wc -w); i=0; \
	for py in $$pythons; do \
		i=$$((i + 1)); \
		name=$$($$py -c 'import sys; print("py%d.%d" % sys.version_info[:2])'); \
		methods=default; posix=; \
		if [ $$i -eq 1 ] || [ $$i -eq $$count ]; then methods=fork,spawn,forkserver; \
		elif [ $$i -eq 2 ]; then methods=spawn; posix=1; fi; \
		start=$$(date +%s); \
		$(MAKE) --no-print-directory test-one PY=$$py NAME=$$name METHODS=$$methods POSIX_ONLY=$$posix; \
		echo "=== $$name took $$(( $$(date +%s) - start )) s ==="; \
	done
	@$(MAKE) --no-print-directory test-nodill package
	@echo "=== tested on CPython $(or $(FOUND),python3); not found, so skipped: $(or $(filter-out $(FOUND),$(VERSIONS)),none) ==="

test-nodill:  ## the tests where dill is not installed (ezq.py copied into a project)
	$(call venv,$(PYTHON),nodill,$(NODILL_DEPS))
	@echo "=== without dill ==="
	env -u PYTHONDONTWRITEBYTECODE EZQ_TEST_METHODS=default .venv/nodill/bin/python -m pytest -q -n 4 test_ezq.py

package:  ## build the sdist and wheel, check them, and type-check a user's script against them
	$(call venv,$(PYTHON),package,$(PACKAGE_DEPS))
	@echo "=== package ==="
	rm -rf dist
	.venv/package/bin/python -m build --quiet .
	.venv/package/bin/twine check --strict dist/*
	EZQ_WHEEL="$$(ls dist/*.whl)" EZQ_SDIST="$$(ls dist/*.tar.gz)" \
		.venv/package/bin/python -m pytest -q -m package test_ezq.py

.PHONY: test-one
# On the oldest and the newest Python, the process tests run under each start
# method; between them, under the interpreter's default (the second one: under
# spawn, with Linux's own calls hidden, as macOS has none: EZQ_POSIX_ONLY). The
# corpus of scripts runs under all three everywhere. Tests mostly wait: -n 4.
METHODS ?= fork,spawn,forkserver
test-one:
	$(call venv,$(PY),$(NAME),$(TEST_DEPS))
	@echo "=== $(NAME): start methods $(METHODS)$(if $(POSIX_ONLY), (EZQ_POSIX_ONLY: no Linux-only calls)) ==="
	env -u PYTHONDONTWRITEBYTECODE EZQ_TEST_METHODS=$(METHODS) EZQ_POSIX_ONLY=$(POSIX_ONLY) \
		.venv/$(NAME)/bin/python -m pytest -q -n 4 test_ezq.py

lint:  ## ruff (lint and format) and mypy --strict
	$(call venv,$(PYTHON),lint,$(LINT_DEPS))
	.venv/lint/bin/ruff check ezq.py test_ezq.py bench/
	.venv/lint/bin/ruff format --check ezq.py test_ezq.py bench/
	.venv/lint/bin/mypy --strict ezq.py test_ezq.py bench/bench.py
	.venv/lint/bin/pyright ezq.py

bench:  ## ezq next to the standard library on this machine (bench/bench.py)
	$(call venv,$(PYTHON),demo,$(TEST_DEPS))
	.venv/demo/bin/python bench/bench.py
	.venv/demo/bin/python bench/bench.py --size
