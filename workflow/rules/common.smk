# Helpers shared by the rules: the validated config, the study plan and the file names.
import json
import re
import shlex
import sys
from pathlib import Path

from promptworth.errors import PromptworthError
from promptworth.methods.registry import search_kind
from promptworth.methods.specs import NAME_PATTERN
from promptworth.backbones.registry import (
    HUB_PINS_DIR,
    MODELS_DIR,
    OFFLINE_MODELS,
    SHORT_NAMES,
)
from promptworth.backbones.resolve import hub_model, model_label
from promptworth.data.splits import DEV_POLICIES, FIXED_DEV
from promptworth.data.task_files import source_files as task_sources
from promptworth.study import tiny_variant
from promptworth.study.reuse import Reuse, reuse, set_aside, stale_summary
from promptworth.study.runs_dir import check_runs_dir, strays_summary
from promptworth.study.config import run_path as study_run_path
from promptworth.study.config_file import read_config_file
from promptworth.study.load import load_study
from promptworth.study.estimate import estimate_here
from promptworth.study.estimate_report import study_summary
from promptworth.study.planning import pilots, plan
from promptworth.training.lr_grid import extension_rate, rate_label, read_selection
from promptworth.training.predictions import kept_in
from promptworth.training.settings import training_args

try:
    # Snakemake has read the config files already (with YTE, which runs code): a config that
    # asks for it is refused here too; `make` and `promptworth pool` refuse it before Snakemake
    for configfile in workflow.overwrite_configfiles:
        read_config_file(configfile)
    # the tiny variant (PROMPTWORTH_FAST=1: promptworth.study.tiny_variant) shrinks the study here, and only here
    STUDY_CONFIG = tiny_variant.study_config(config)
    STUDY = load_study(
        STUDY_CONFIG,
        Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml",
    )
    check_runs_dir(STUDY)
    # records that exist but are not what the study asks for: they train again (below); a job of
    # a cluster, which reads the Snakefile again to run one job, has none to look for
    REUSE = reuse(STUDY) if workflow.is_main_process else Reuse({}, {})
except PromptworthError as exc:
    sys.exit(f"promptworth: error: {exc}")
if tiny_variant.notice():
    print(tiny_variant.notice(), file=sys.stderr)
if stale_summary(REUSE):
    print(stale_summary(REUSE), file=sys.stderr)
# Snakemake's own change detection lives in .snakemake/ of one working folder: a record is compared
# with the study itself. One that differs is moved to <results>/stale/ (not in a dry run, nor in a
# cluster's job), so that the study trains it again.
if workflow.is_main_process and not workflow.output_settings.dryrun:
    try:
        set_aside(REUSE, STUDY)
    except PromptworthError as exc:
        sys.exit(f"promptworth: error: {exc}")
if strays_summary(STUDY):
    print(strays_summary(STUDY), file=sys.stderr)
RESULTS = STUDY.results_dir
# the study's models by label (the folder of their runs' files), each as the config names it
MODELS = STUDY.models_by_label()
RUNS = plan(STUDY)
# the lr_grid's pilot runs (none without one)
PILOTS = pilots(STUDY)


wildcard_constraints:
    model="|".join(map(re.escape, MODELS)),
    size=r"\d+|all",
    policy="|".join(DEV_POLICIES),
    data_seed=r"\d+",
    train_seed=r"\d+",
    method=NAME_PATTERN,
    treatment=NAME_PATTERN,
    baseline=NAME_PATTERN,
    # a learning rate as rate_label spells it (repr of a float: 1e-05, 0.0002)
    rate=r"[0-9][0-9.e+-]*",
    # a size band of the lr_grid: one of its pilot sizes
    band=r"\d+|all",


def split_manifest(task, size, data_seed, method=None):
    """The manifest of one (task, size, data seed)'s split folder, a method's where its dev policy
    is its own (by_method), the file its rule makes last."""
    return f"{STUDY.split_folder(task, size, data_seed, method)}/manifest.json"


# A run's wildcards in the order of the file-name helpers below: run_file(*RUN_WILDCARDS) is
# the train rule's output pattern, run_file(*run_key(run)) a planned run's record.
RUN_WILDCARDS = (
    "{model}",
    "{task}",
    "{method}",
    "{size}",
    "{data_seed}",
    "{train_seed}",
)


def run_key(run):
    """A planned run's values of RUN_WILDCARDS, in their order (its model as its label)."""
    return (run.model, run.task, run.method, run.size, run.data_seed, run.train_seed)


def run_path(folder, suffix, *run, sub=""):
    """Where a thing of one run lives: <results>/<folder>/<model>/<task>/<method>/<sub><run><suffix>."""
    return study_run_path(RESULTS, folder, suffix, *run, sub=sub)


def run_file(*run):
    """One run's record."""
    return run_path("runs", ".json", *run)


def benchmark_file(*run):
    """Snakemake's benchmark of one training job (wall time, peak memory, CPU time, I/O)."""
    return run_path("benchmarks/train", ".tsv", *run)


def train_log(*run):
    """The log of one training job."""
    return run_path("logs/train", ".log", *run)


def runs_folder(record):
    """The folder of every run record, from one record's path (<folder>/<model>/<task>/<method>/<run>.json)."""
    return str(Path(record).parents[3])


def run_files():
    """The run records the analysis reads: the study's own (with runs_dir, those already there)."""
    files = [STUDY.run_file(r) for r in RUNS]
    return [f for f in files if Path(f).is_file()] if STUDY.runs_dir else files


# A pilot run's wildcards: its learning rate, then a run's.
PILOT_WILDCARDS = ("{rate}", *RUN_WILDCARDS)


def pilot_path(folder, suffix, rate, *run):
    """Where a thing of one pilot run of the lr_grid lives: <run_path>/lr-<rate>/<run><suffix>."""
    return run_path(folder, suffix, *run, sub=f"lr-{rate}/")


def pilot_file(*pilot):
    """One pilot run's record."""
    return pilot_path("lr-grid", ".json", *pilot)


def lr_file(model, task, method, size):
    """The learning rate the lr_grid chose for a model, task and method that a run of training-set
    size `size` trains at: its size band's (promptworth select-lr)."""
    return STUDY.lr_file(model, task, method, size)


def lr_pattern(grid_only=False):
    """The file pattern of the selections (rules select_lr_grid and select_lr): per band, or for a
    grid of one pilot size, per method alone (then its wildcards have no band)."""
    return STUDY.lr_path("{model}", "{task}", "{method}", "{band}", grid_only)


def lr_log(rule):
    """The log pattern of a selection job of `rule`, named as its file (lr_pattern)."""
    several = STUDY.lr_grid is not None and len(STUDY.lr_grid.sizes) > 1
    names = ["{model}", "{task}", "{method}", *(["{band}"] if several else [])]
    return f"{Path(RESULTS, 'logs', rule, *names)}.log"


def lr_band(wildcards):
    """The pilot size of a selection job: its band, or the grid's one pilot size (as the config
    gives it: the params of a selection made before bands stay the same)."""
    return wildcards.band if "band" in wildcards.keys() else STUDY.lr_grid.sizes[0]


def select_lr_flags():
    """`--extend-at-edge` for a grid that extends at its edge, `--bands <pilot sizes>` for one of
    several: text for the shell command, quoted, ending in a space where not empty."""
    grid = STUDY.lr_grid
    flags = [] if grid is None or not grid.extend_at_edge else ["--extend-at-edge"]
    if grid is not None and len(grid.sizes) > 1:
        flags += ["--bands", *map(str, grid.sizes)]
    return "".join(f"{shlex.quote(flag)} " for flag in flags)


def pilot_files(model, task, method, band, rate=None):
    """The records of a model, task and method's pilot runs at pilot size `band`: at every rate of
    the grid, or (`rate`) with the same seeds at that one."""
    return [
        pilot_file(
            rate_label(p.rate if rate is None else rate),
            p.model,
            p.task,
            p.method,
            p.size,
            p.data_seed,
            p.train_seed,
        )
        for p in PILOTS
        if (p.model, p.task, p.method, str(p.size)) == (model, task, method, str(band))
        # another rate: the seeds of the grid's first rate's pilots, each once
        and (rate is None or p.rate == STUDY.lr_grid.rates[method][0])
    ]


def selection_inputs(wildcards):
    """The pilot records a band's selection reads: those at the grid's rates, and where the grid
    extends at its edge and its choice over the grid alone (checkpoint select_lr_grid) is at one,
    those at the rate beyond it (promptworth.training.lr_grid.EDGE_RULE)."""
    band = lr_band(wildcards)
    files = pilot_files(wildcards.model, wildcards.task, wildcards.method, band)
    if not STUDY.lr_grid.extend_at_edge:
        return files
    grid_choice = checkpoints.select_lr_grid.get(**wildcards).output[0]
    try:
        chosen = read_selection(Path(grid_choice))["learning_rate"]
    except PromptworthError as exc:
        raise PromptworthError(f"the choice over the grid alone: {exc}") from None
    beyond = extension_rate(STUDY.lr_grid.rates[wildcards.method], chosen)
    if beyond is None:
        return files
    return files + pilot_files(
        wildcards.model, wildcards.task, wildcards.method, band, beyond
    )


def search_file(*run):
    """The result file of one run's search (the label words or template a search method applies)."""
    return run_path("search", ".json", *run)


def searches(method):
    """Whether a method of the study trains with a search's result (promptworth search)."""
    return search_kind(STUDY.method(method)) is not None


def run_inputs(wildcards):
    # ancient: a record names its split by content (split_manifest_sha256, checked when the
    # records are aggregated) and the model by name, so a split regenerated byte for byte or a
    # model converted again (a fresh clone) must not make finished runs look out of date.
    split = split_manifest(
        wildcards.task, wildcards.size, wildcards.data_seed, wildcards.method
    )
    inputs = {"split": ancient(split)}
    folder = model_made(MODELS[wildcards.model])
    if folder:
        inputs["model"] = ancient(folder)
    return inputs


def train_inputs(wildcards):
    """A run's split and model, the result file of its search if its method applies one, and
    the selection whose rate it trains at if the lr_grid chooses it."""
    run = [wildcards[w.strip("{}")] for w in RUN_WILDCARDS]
    inputs = run_inputs(wildcards)
    if searches(wildcards.method):
        inputs["search"] = search_file(*run)
    if STUDY.uses_lr_selection(wildcards.method, wildcards.size):
        # ancient: a finished run keeps its record when the selection is rewritten (its record
        # cites the file's sha256)
        inputs["lr"] = ancient(
            lr_file(wildcards.model, wildcards.task, wildcards.method, wildcards.size)
        )
    return inputs


def lr_args(wildcards, input):
    """`--learning-rate-from <file>` for a run that trains at the rate the lr_grid chose."""
    if STUDY.uses_lr_selection(wildcards.method, wildcards.size):
        return ["--learning-rate-from", input.lr]
    return []


def split_dir_of(wildcards, input):
    """The split folder of a run (its manifest's folder)."""
    return str(Path(input.split).parent)


def template_args(wildcards):
    """`--template <name>` when the method names its own template or the config the task's."""
    template = STUDY.template_for(wildcards.task, wildcards.method)
    return ["--template", template] if template is not None else []


def method_training_args(wildcards):
    """The flags that define a method of the config (none for a built-in), then the method's
    settings in TrainConfig's field order: reordering keys changes nothing. A run at the rate
    the lr_grid chose gets no --learning-rate (lr_args)."""
    return STUDY.method_args(wildcards.method) + training_args(
        STUDY.run_training(wildcards.method, wildcards.size)
    )


def pilot_training_args(wildcards):
    """A pilot run's flags: its method's, at its pilot size and the wildcard's rate of the grid (or
    beyond its edge, for a grid that extends there)."""
    rates = {rate_label(r): r for r in STUDY.pilot_rates(wildcards.method)}
    if wildcards.rate not in rates:
        raise PromptworthError(
            f"learning rate {wildcards.rate} of {wildcards.method} is not in the lr_grid"
        )
    if wildcards.size not in map(str, STUDY.lr_grid.sizes):
        raise PromptworthError(
            f"size {wildcards.size} is not a pilot size of the lr_grid"
        )
    return STUDY.method_args(wildcards.method) + training_args(
        STUDY.pilot_training(wildcards.method, rates[wildcards.rate], wildcards.size)
    )


def benchmarked_runs():
    """The runs the costs table lists: every run still to train, and finished runs with a
    benchmark. A run trained before benchmarks were recorded (the published study's) is left out:
    asking for its benchmark would make Snakemake train it again."""
    keep = []
    for r in RUNS:
        run = run_key(r)
        if Path(benchmark_file(*run)).exists() or not Path(run_file(*run)).exists():
            keep.append(run)
    return keep


def model_dir(model):
    """Folder of a model (as the config names it) that this workflow builds itself (a converted
    offline backbone, tiny test models); None for any other."""
    if model in SHORT_NAMES:
        return SHORT_NAMES[model]
    if model.startswith(f"{MODELS_DIR}/tiny-"):
        return model
    return None


def hub_pin(model):
    """The file rule prefetch writes once it has downloaded a hub model (None for any other)."""
    return f"{HUB_PINS_DIR}/{model_label(model)}.json" if hub_model(model) else None


def model_made(model):
    """What this workflow makes of a model before its runs: the folder it builds, or the file rule
    prefetch writes for a hub model (None: nothing)."""
    return model_dir(model) or hub_pin(model)


def model_dirs():
    """What this workflow makes of the study's models (model_made), in the config's order."""
    return [made for made in map(model_made, STUDY.models) if made]


def model_arg(wildcards):
    """A run's `--model`: the folder this workflow builds, else the model as the config names it."""
    model = MODELS[wildcards.model]
    return model_dir(model) or model


def model_load_args(wildcards, output):
    """A run's `--model-dtype` and `--trust-remote-code` where its model's by_model asks for them.
    A function of the output too: Snakemake's params trigger skips it (a study that names neither
    runs the same command as before they existed; a record names its dtype, compared on reuse).
    """
    return STUDY.load_options_for(MODELS[wildcards.model]).args()


def run_resources(wildcards):
    """The resources of a run's job: its model's (resources, then by_model's)."""
    return STUDY.resources_for(MODELS[wildcards.model])


def device_args(wildcards):
    """`--device cuda` for a run whose jobs ask for GPUs (resources.gpus), so that a job
    without CUDA fails at once rather than train on the CPU; else none (auto)."""
    return ["--device", "cuda"] if run_resources(wildcards)["gpus"] else []


def data_dir_args():
    """`--data-dir <folder>` when the config names a mirror (a list: each item is quoted with :q)."""
    return ["--data-dir", STUDY.data_dir] if STUDY.data_dir else []


def task_files_args(wildcards, output):
    """`--task-files <file>...` when the config names task files (a list: each item is quoted with :q).
    A function of the output, as Snakemake's params trigger skips: the commands of a study without
    task files keep their params (a record names its split's manifest, which names the task file).
    """
    files = STUDY_CONFIG.get("task_files", [])
    return ["--task-files", *files] if files else []


def task_inputs(wildcards):
    """What a split of a task of a task file is drawn from: the task file and the local files its
    rows are read from (none for a built-in task: the mirror's files are checked by sha256).
    """
    task = STUDY.defined_tasks.get(wildcards.task)
    return list(task_sources(task)) if task is not None else []


def records_since_issue_30():
    """Whether the analysis reads what records keep since issue 30 (each test row's prediction, the
    examples the reported checkpoint had read): the paired, protocol and cost tables. A study that
    trains writes them into its records; one that reads runs_dir only when some of its records keep
    them (none of the editions published before issue 30 does)."""
    return not STUDY.runs_dir or any(kept_in(f) for f in run_files())


# asked once: with runs_dir it reads the records
RECORD_TABLES = records_since_issue_30()


def train_seed_rows():
    """Whether some run has a sibling of another train seed (same model, task, method, size and data
    seed): the tables' train_seeds.md. Planned ones, in a study that trains; with runs_dir, records there.
    """
    seeds = {}
    for run in RUNS:
        if not STUDY.runs_dir or Path(STUDY.run_file(run)).is_file():
            seeds.setdefault(
                (run.model, run.task, run.method, run.size, run.data_seed), set()
            ).add(run.train_seed)
    return any(len(found) > 1 for found in seeds.values())


def first_model():
    """The label of the study's first model: a method with a backbone of its own runs in its place
    (promptworth.study.planning.plan), and its comparisons pair it with that model's runs.
    """
    return model_label(STUDY.models[0])


def study_outputs():
    return [
        f"{RESULTS}/runs.csv",
        f"{RESULTS}/tables/advantage.md",
        f"{RESULTS}/tables/methods.md",
        *(f"{RESULTS}/advantage/{t}-vs-{b}.json" for t, b in STUDY.comparisons),
        f"{RESULTS}/figures/overview.png",
        f"{RESULTS}/figures/methods.png",
        # the training jobs' costs (a study that reads runs_dir trains nothing: no costs)
        *([] if STUDY.runs_dir else [f"{RESULTS}/tables/costs.csv"]),
        # the advantage at each step budget, for a study whose runs record budgets
        *([f"{RESULTS}/figures/budgets.png"] if STUDY.budgets() else []),
        # two methods compared row by row, the protocol kept and the score against training FLOPs,
        # from what the records keep since issue 30
        *(
            [
                f"{RESULTS}/tables/paired.md",
                f"{RESULTS}/tables/protocol.md",
                f"{RESULTS}/figures/cost.png",
            ]
            if RECORD_TABLES
            else []
        ),
        # LM-BFF's table beside their numbers, for a study on their K-shot splits
        *([f"{RESULTS}/paper/lmbff.md"] if STUDY.splits.kind == "kshot" else []),
    ]


def train_threads():
    """The threads of a training job: Snakemake's --set-threads for rule train, else the fewest of
    any model's jobs (its resources)."""
    threads = workflow.resource_settings.overwrite_threads.get(
        "train", min(STUDY.resources_for(model)["threads"] for model in STUDY.models)
    )
    return max(1, int(getattr(threads, "value", threads)))


def runs_at_once():
    """How many training jobs run side by side: the cores over a training job's threads."""
    return max(1, (workflow.resource_settings.cores or 1) // train_threads())
