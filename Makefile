# AMP-BNN: set-up, tests and the benchmark pipeline. `make help` lists the targets.
#
#   make all     set up (venv + data) and run the default pipeline:  snakemake --cores 2 all
#   make test    the test suite without the slow tests

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CORES ?= 2
CONFIG ?= configs/default.yaml
CI_CONFIG := configs/ci.yaml
CI_SUMMARY := results/ci/summary.json
CI_REFERENCE := configs/ci_reference.yaml
STAMP := $(VENV)/.installed
SNAKEMAKE := $(BIN)/python -m snakemake
# Loads Fashion-MNIST through the project's own loader (local dirs, then the Debian package's).
HAVE_FASHION := $(BIN)/python -c "from harness.data import load_dataset as l; l('fashion_mnist', subset=1, test_subset=1)"
GET_FASHION := $(BIN)/python -c "from harness.data import load_dataset as l; l('fashion_mnist', subset=1, test_subset=1, download=True)"

.PHONY: help venv data test test-slow all ci ci-pipeline uci gpu-check bench bench-quick bench-floor lint format dryrun report clean

help: ## list the targets
	@echo "Usage: make <target> [CORES=$(CORES)] [CONFIG=$(CONFIG)]"
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

venv: $(STAMP) ## create .venv and install the project (again when pyproject/constraints change)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -c constraints.txt -e ".[dev]"
	@touch $@

data: $(STAMP) ## make sure Fashion-MNIST is available (found, apt-get as root, or a download)
	@if $(HAVE_FASHION) 2>/dev/null; then \
		echo "Fashion-MNIST: found"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "Fashion-MNIST: installing the Debian package dataset-fashion-mnist"; \
		apt-get update && apt-get install -y dataset-fashion-mnist && $(HAVE_FASHION); \
	elif $(GET_FASHION) 2>/dev/null; then \
		echo "Fashion-MNIST: downloaded with torchvision into $${AMP_DATA_ROOT:-data}/"; \
	else \
		echo "Fashion-MNIST is missing and could not be installed or downloaded. Either run"; \
		echo "    sudo apt-get update && sudo apt-get install -y dataset-fashion-mnist"; \
		echo "or copy its four *-ubyte.gz files into $${AMP_DATA_ROOT:-data}/FashionMNIST/raw/."; \
		exit 1; \
	fi

test: $(STAMP) ## run the tests (without the slow ones; CI runs those too)
	$(BIN)/pytest -q -m "not slow"

test-slow: $(STAMP) ## run only the slow tests (Monte Carlo checks, a whole CI pipeline run)
	$(BIN)/pytest -q -m slow

all: $(STAMP) data ## set up and run the default pipeline (about 15 minutes on 2 cores)
	$(SNAKEMAKE) all --cores $(CORES) --configfile $(CONFIG)

ci-pipeline: $(STAMP) ## the CI configuration end to end, its HTML report and the metric gate
	$(SNAKEMAKE) --cores $(CORES) --configfile $(CI_CONFIG) --show-failed-logs all
	$(SNAKEMAKE) --configfile $(CI_CONFIG) --report results/ci/report.html
	$(BIN)/python -m harness.gate --summary $(CI_SUMMARY) --reference $(CI_REFERENCE)

ci: $(STAMP) data ## what CI runs after set-up: tests, slow tests, CI pipeline and gate
	$(BIN)/pytest -q -m "not slow"
	$(BIN)/pytest -q -m slow --deselect tests/workflow/test_pipeline.py::test_ci_configuration_end_to_end
	$(MAKE) --no-print-directory ci-pipeline

uci: $(STAMP) ## the UCI regression benchmark, nine sets (reports/uci/; see README for the time)
	$(SNAKEMAKE) all --cores $(CORES) --configfile configs/uci.yaml

bench: $(STAMP) ## speed and memory of MP, AdamW and IVON on this CPU, real and random inputs (reports/bench_cpu.md)
	$(BIN)/python -m harness.bench --device cpu --threads $(CORES) --out reports

bench-quick: $(STAMP) ## the same on a quarter of the examples, once (minutes; written to results/bench/)
	$(BIN)/python -m harness.bench --quick --device cpu --threads $(CORES) --out results/bench

bench-floor: $(STAMP) data ## the arithmetic floor of MP's pass on mlp and mlp5m against AdamW (reports/bench_floor_*.md; minutes)
	$(BIN)/python -m harness.bench_floor --arch mlp --threads $(CORES) --out reports
	$(BIN)/python -m harness.bench_floor --arch mlp5m --threads $(CORES) --out reports

gpu-check: $(STAMP) ## on a CUDA machine: the GPU tests, then the benchmark (reports/bench_cuda.md)
	$(BIN)/pytest -q -m gpu 2>&1 | tee reports/gpu_tests.log
	$(BIN)/python -m harness.bench --quick --device cuda --threads 8 --out reports 2>&1 | tee reports/bench_cuda.log

lint: $(STAMP) ## ruff (lint and format check) and snakemake --lint
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(SNAKEMAKE) --lint

format: $(STAMP) ## format the code and fix what ruff can fix
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

dryrun: $(STAMP) ## dry-run every configuration (default, ci, paper, uci)
	@for config in configs/default.yaml configs/ci.yaml configs/paper.yaml configs/uci.yaml; do \
		echo "== $$config"; \
		$(SNAKEMAKE) -n --quiet rules --configfile $$config; \
	done

report: $(STAMP) ## HTML report of the last pipeline run (reports/report.html)
	$(SNAKEMAKE) --configfile $(CONFIG) --report reports/report.html

clean: ## remove pipeline outputs (results/, logs/, benchmarks/); reports/ is kept
	rm -rf results logs benchmarks .snakemake
