# Everything self-bootstraps: a fresh clone needs only python3 (3.11+), node/npm and make.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
CHECKOV_VENV := .venv-checkov
BIN := $(VENV)/bin
ENV ?= dev
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 18,20
export PATH := $(CURDIR)/$(BIN):$(CURDIR)/node_modules/.bin:$(PATH)

.PHONY: help install local test test-fast lint typecheck unit synth synth-all check cdk-synth bench clean

help:
	@echo "make local        start the embedded local environment (rtp deploy --env local)"
	@echo "make test         lint, type check and the whole test suite (all gates)"
	@echo "make test-fast    domain, handler and CLI unit tests: no CDK synth, no end-to-end, no child processes (pytest --fast)"
	@echo "make synth ENV=x  write the one stack template for config/x.yaml to cdk.out/"
	@echo "make check        rtp check --env all (cdk-nag, cfn-lint, checkov)"
	@echo "make bench        benchmarks (bench/)"

# Stamp files: reinstall only when the lock files change.
$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

$(CHECKOV_VENV)/.installed: requirements-checkov.txt
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/python -m pip install --quiet -r requirements-checkov.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

install: $(VENV)/.installed $(CHECKOV_VENV)/.installed node_modules/.installed

local: $(VENV)/.installed
	$(BIN)/rtp deploy --env local

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.installed
	$(BIN)/mypy main.py stack handlers rtp_cli tests bench

unit: install
	CHECKOV=$(CURDIR)/$(CHECKOV_VENV)/bin/checkov $(BIN)/pytest

test: lint typecheck unit

# The fast tier (tests/tiers.py): deselects `synth`, `e2e` and `process` tests; fails if jsii/aws_cdk gets imported;
# property-based tests run a tenth of their examples (`make test` runs them all).
# One pytest-xdist worker per core (at most 4: each worker collects the suite once, ~2 s of CPU). Work stealing:
# a worker that runs out takes half of another's queue, so both end together (with `--dist load` one worker
# finished 10.7 s before the other in a measured run).
# Bytecode caching on, even where PYTHONDONTWRITEBYTECODE is set: compiling the modules (and pytest's assertion
# rewrite of every test module) afresh costs each worker ~3.5 s of CPU. __pycache__/ is git-ignored.
test-fast: $(VENV)/.installed
	env -u PYTHONDONTWRITEBYTECODE $(BIN)/pytest --fast -n auto --maxprocesses 4 --dist worksteal

synth: $(VENV)/.installed
	rm -rf cdk.out
	CDK_OUTDIR=cdk.out CDK_CONTEXT_JSON='{"env":"$(ENV)"}' $(BIN)/python main.py
	@ls cdk.out/*.template.json

# The pinned CDK CLI reads this aws-cdk-lib's cloud assembly (proved in CI).
cdk-synth: install
	rm -rf cdk.out
	npx cdk synth --quiet -c env=$(ENV)

check: install
	CHECKOV=$(CURDIR)/$(CHECKOV_VENV)/bin/checkov $(BIN)/rtp check --env all

bench: $(VENV)/.installed
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) node_modules cdk.out .rtp .pytest_cache .mypy_cache .ruff_cache
