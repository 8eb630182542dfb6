# The two commands: `make demo` runs the whole pipeline, `make test` checks everything.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# every package `make install` installs, at the version pinned (`make lock` refreshes it); used as pip's constraints,
# so pyproject.toml still says what is wanted and a machine still gets its own platform's packages (a laptop's torch)
LOCK := requirements-lock.txt
# named after the content of pyproject.toml and the lock, not their time: nbdev-export rewrites pyproject.toml unchanged
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml $(LOCK) 2>/dev/null | sha256sum | cut -c1-16)
# files that nbdev-export and nbdev-clean may rewrite: the sync check compares them before and after
SYNCED = find nbs mlproj -type f \( -name '*.ipynb' -o -name '*.py' \) -not -path '*/.ipynb_checkpoints/*' | sort | xargs sha256sum

.PHONY: help install lock demo test test-full lint sync-check nbtest pytest pytest-full lab export docs docs-serve prose clean bench
help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/'

$(STAMP):
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -c $(LOCK) -e '.[dev]'
	$(BIN)/pip check --disable-pip-version-check
	@# notebooks merge cell by cell (nbdev's merge driver; .gitattributes names it) with no per-person setup
	-git rev-parse --git-dir >/dev/null 2>&1 && git config merge.jupyternotebook.name "nbdev's notebook merge" \
	  && git config merge.jupyternotebook.driver "$(CURDIR)/$(BIN)/nbdev-merge %O %A %B %P"
	rm -f $(VENV)/.installed-*; touch $(STAMP)

install: $(STAMP) ## create .venv and install the project from its own files

lock: ## re-resolve pyproject.toml's dependencies in a fresh venv and pin every installed package in the lock
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && set -e && \
	$(PYTHON) -m venv "$$tmp" && \
	"$$tmp/bin/pip" install --disable-pip-version-check -q -e '.[dev]' && \
	"$$tmp/bin/pip" check --disable-pip-version-check && \
	{ echo '# Every package `make install` installs, pinned: written by `make lock` (pip freeze of a fresh install of'; \
	  echo "# .[dev] with $$("$$tmp/bin/python" --version)), used as constraints by \`make install\`. Local version labels"; \
	  echo '# (torch 2.13.0+cpu) are cut so a machine takes the build its own index offers.'; \
	  "$$tmp/bin/pip" freeze --disable-pip-version-check --exclude-editable | sed -E 's/^([^=@ ]+==[^+]+)\+.*$$/\1/'; \
	} > $(LOCK).new && mv $(LOCK).new $(LOCK) && echo "$(LOCK): $$(grep -vc '^#' $(LOCK)) packages pinned"

demo: $(STAMP) ## data, train, evaluate, register, then serve the model and query it over HTTP
	$(BIN)/mlproj demo

test: $(STAMP) lint sync-check nbtest pytest ## lint, notebooks in sync and clean, notebook tests, then pytest

lint: $(STAMP) ## ruff check and ruff format --check (notebooks included; mlproj/ is checked, not formatted: nbdev writes it)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

sync-check: $(STAMP) ## nbdev-export and nbdev-clean must change nothing
	@before=$$($(SYNCED)); \
	$(BIN)/nbdev-export && $(BIN)/nbdev-clean && \
	after=$$($(SYNCED)); \
	if [ "$$before" != "$$after" ]; then \
	  echo "sync check FAILED: nbdev-export/nbdev-clean changed these files; commit the notebooks and mlproj/ together:"; \
	  diff <(echo "$$before") <(echo "$$after") | grep '^>' | awk '{print "  " $$3}'; exit 1; \
	else echo "sync check: notebooks and mlproj/ are in sync and clean"; fi

nbtest: $(STAMP) ## run every notebook in nbs/ as a test (job notebooks are run by pytest)
	$(BIN)/nbdev-test

# test modules run side by side, one worker a core (TEST_WORKERS=1 runs them in this process, one after another);
# a module stays on one worker (--dist loadfile): its fixtures, servers and browser are started once. The schema
# test runs after them in one process: schemathesis gives all its operations one node id, which xdist cannot schedule
TEST_WORKERS ?= auto
XDIST = $(if $(filter 1,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile --ignore=tests/test_schema.py)
THEN_SCHEMA = $(if $(XDIST),&& $(BIN)/pytest -p no:xdist $(1) tests/test_schema.py)

pytest: $(STAMP) ## the fast tier of tests/ (everything not marked `full`), a module a core (TEST_WORKERS=1: one process)
	$(BIN)/pytest -m 'not full' $(XDIST) $(call THEN_SCHEMA,-m 'not full')

test-full: $(STAMP) lint sync-check nbtest pytest-full ## the fast tier and the slow one (tests marked `full`)

pytest-full: $(STAMP) ## every test in tests/, the slow ones too
	$(BIN)/pytest $(XDIST) $(call THEN_SCHEMA)

lab: $(STAMP) ## open JupyterLab on the notebooks, cleaning them on save (installs it on first use)
	$(BIN)/pip install --disable-pip-version-check -q -e '.[dev,lab]'
	$(BIN)/jupyter lab --config=$(CURDIR)/jupyter_server_config.py $(if $(filter 0,$(shell id -u)),--allow-root) nbs

docs: $(STAMP) ## build the docs site offline from the notebooks into _site/ (nbdev-docs where Quarto is installed)
	$(BIN)/python docs/build.py

docs-serve: $(STAMP) ## build the docs site and preview it at http://127.0.0.1:8001
	$(BIN)/python docs/build.py --serve

prose: ## how much each module notebook explains: markdown lines, exported cells with a why before them (REV=origin/main for another revision)
	python3 docs/prose_count.py --missing $(if $(REV),--rev $(REV))

bench: $(STAMP) ## P1-P4 of issue 12 and issue 9's annotation saves side by side in one run: reports/bench/results.{json,md} (a few minutes)
	$(BIN)/pip install --disable-pip-version-check -q -e '.[dev,bench]'
	@command -v wrk >/dev/null || { echo 'installing wrk (Debian)'; apt-get install -y -q wrk >/dev/null || \
	  echo 'no wrk: the load comes from an async httpx client instead'; }
	$(BIN)/python bench/run.py $(BENCH_ARGS)

export: $(STAMP) ## notebooks -> mlproj/, then clean the notebooks
	$(BIN)/nbdev-export && $(BIN)/nbdev-clean

clean: ## remove generated runs, stores and caches (not .venv)
	rm -rf reports/runs reports/index.html store .pytest_cache _site _site.src
