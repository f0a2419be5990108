# lifelink: every target sets up .venv itself when it is missing.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Prefer python3.13 (the Lambda runtime); pyenv keeps one under its versions folder on these machines.
PYTHON ?= $(shell for p in python3.13 $$HOME/.pyenv/versions/3.13*/bin/python3.13 python3.12 $$HOME/.pyenv/versions/3.12*/bin/python3.12 python3; do \
	  if command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then echo $$p; break; fi; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help venv run test lint unit integration openapi template-check fault-test proof build deploy bench clean

help:
	@echo "make run    start the whole system locally (moto, HTTP front, pollers, Alipay simulator)"
	@echo "make test   lint, template checks and every test"
	@echo "make bench  print the benchmark figures"
	@echo "make build  sam build;  make deploy  sam deploy"

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "need Python >= 3.12 (3.13 preferred)"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/python -m lifelink_local.stack

lint: $(STAMP)
	$(BIN)/ruff check .

unit: $(STAMP)
	$(BIN)/pytest tests/unit

# The internal API's OpenAPI document (docs/openapi.json) and docs/api.md's reference table, from the routes.
openapi: $(STAMP)
	$(BIN)/python -m lifelink_local.openapi

template-check: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/pytest tests/template

# The outbound fault test (10,000 jobs, issue 3) runs beside the rest of the suite: it is bound to one core (one
# process, moto in-process), so the two share the machine's cores. Its tally is printed when both are done.
FAULT_JOBS ?= 10000
FAULT_LOG := .fault-test.log

test: $(STAMP)
	$(BIN)/ruff check .
	@LIFELINK_FAULT_JOBS=$(FAULT_JOBS) $(BIN)/pytest -s -p no:cacheprovider tests/integration/test_outbound_faults.py \
	  > $(FAULT_LOG) 2>&1 & fault=$$!; \
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/pytest --deselect tests/integration/test_outbound_faults.py; rest=$$?; \
	wait $$fault; fault_rc=$$?; \
	echo "---- the outbound fault test ($(FAULT_JOBS) jobs, $(FAULT_LOG)) ----"; \
	grep -v '^ *$$' $(FAULT_LOG) | tail -45; \
	if [ $$fault_rc -ne 0 ]; then grep -E '^(E |FAILED|ERROR)' $(FAULT_LOG) | head -40; \
	  echo "the outbound fault test failed (rc=$$fault_rc): see $(FAULT_LOG)"; fi; \
	exit $$(( rest != 0 ? rest : fault_rc ))

# ARCH=arm64 (default) or x86_64: the functions' architecture and the layer's wheels, kept in step.
ARCH ?= arm64
LAYER_ARCH := $(if $(filter x86_64,$(ARCH)),x86_64,aarch64)

fault-test: $(STAMP)
	LIFELINK_FAULT_JOBS=$(FAULT_JOBS) $(BIN)/pytest -s tests/integration/test_outbound_faults.py

# The fault and load proof (docs/proof.md): four scenarios on the local stack, the reconciled table.
proof: $(STAMP)
	$(BIN)/python -m lifelink_local.proof --scale full

build: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" LAYER_ARCH=$(LAYER_ARCH) SAM_CLI_TELEMETRY=0 \
	  $(BIN)/sam build --parameter-overrides Architecture=$(ARCH)

deploy: build
	PATH="$(CURDIR)/$(BIN):$$PATH" SAM_CLI_TELEMETRY=0 \
	  $(BIN)/sam deploy --guided --parameter-overrides Architecture=$(ARCH)

bench:
	@bash bench/venv.sh "$(PYTHON)"
	.bench-venv/bin/python bench/run.py

clean:
	rm -rf $(VENV) .aws-sam .pytest_cache .ruff_cache
