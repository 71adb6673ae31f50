"""Every verb of ``promptworth``: its name, help, option sets and handler, in one table.

A handler is named by its path (``"module:function"``) and imported only when its verb runs, so
that a verb pays only for its own imports (``promptworth train`` and ``progress`` run once per
training job; the analysis verbs import pandas, the training ones torch).

A verb that prints a result (``prints``) takes ``--json``, added here: its handler returns an
:class:`promptworth.cli.output.Output` and :func:`promptworth.cli.main` prints it, as text or JSON;
no handler writes to stdout itself. An internal verb (``hidden``, the pool's worker) is left out of
``promptworth --help``. ``tests/test_cli_conventions.py`` checks both over this table.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from promptworth.cli import options as o
from promptworth.cli.options import Opt, OptionSet, opt


@dataclass(frozen=True)
class Verb:
    name: str
    help: str
    handler: str  # "promptworth.cli.<module>:<function>"
    options: tuple[OptionSet, ...] = ()
    description: str | None = None
    prints: bool = False  # prints a result on stdout: takes --json
    hidden: bool = False  # an internal verb, not listed by `promptworth --help`


def these(*items: Opt) -> OptionSet:
    """A verb's own options, that no other verb takes."""
    return lambda: items


def _lr_grid_rule() -> str:
    from promptworth.training.lr_grid import RULE

    return RULE


def _tiny_model_options() -> OptionSet:
    def options() -> tuple[Opt, ...]:
        from promptworth.backbones.tiny_models import KINDS, MAX_POSITIONS

        return (opt("--kind", choices=KINDS, default="llama"),
                opt("--positions", type=int, default=MAX_POSITIONS, metavar="N",
                    help="the longest sequence it reads, in tokens (default: %(default)s)"))
    return options


def _offline_model() -> tuple[Opt, ...]:
    from promptworth.backbones.registry import OFFLINE_MODELS, SMOLLM2

    return (opt("--model", choices=tuple(OFFLINE_MODELS), default=SMOLLM2,
                help=f"which offline backbone (default {SMOLLM2})"),)


def _split_options() -> tuple[Opt, ...]:
    from promptworth.data import splits

    return (
        opt("--task", required=True),
        opt("--sizes", nargs="+", required=True, type=splits.parse_size, help="sizes (integers or 'all')"),
        opt("--data-seed", type=int, required=True),
        opt("--dev-policy", choices=splits.DEV_POLICIES, default=splits.DEFAULT_DEV_POLICY),
        opt("--dev-size", type=int, help="dev rows for --dev-policy fixed"),
        opt("--test-limit", type=int, help="use a fixed seeded subset of this many evaluation rows"),
    )


def _kshot_options() -> tuple[Opt, ...]:
    from promptworth.data.kshot import LMBFF_SEEDS
    from promptworth.data.splits import DEFAULT_K

    return (
        opt("--k", type=int, default=DEFAULT_K, help="examples per class (default %(default)s)"),
        opt("--seeds", type=int, nargs="+", default=list(LMBFF_SEEDS), help="data seeds"),
        opt("--tasks", nargs="+", help="tasks (default: every LM-BFF task whose pool is available)"),
        opt("--full", action="store_true", help="the full-data setting: the K-shot dev and test, the whole pool less dev "
            "as training set, in <task>/all-<seed>/"),
    )


DATA = (
    Verb("kshot", "write LM-BFF's K-shot splits, byte for byte", "promptworth.cli.data:run_kshot",
         (o.data_dir, o.out_dir("output folder (LM-BFF's data/k-shot)", renamed_from_out=True), _kshot_options),
         "Write LM-BFF's K-shot splits (<out-dir>/<task>/<K>-<seed>/) exactly as LM-BFF's sampler does.", prints=True),
    Verb("split", "write nested training/dev/test splits of several sizes", "promptworth.cli.data:run_split",
         (_split_options, o.task_files, o.data_dir, o.out_dir("the task's split folder", renamed_from_out=True)),
         "Write the splits of a data-size ladder: <out-dir>/<size>-<data_seed>/{train,dev,test}.jsonl and "
         "manifest.json. Training sets are nested: each contains the smaller ones.", prints=True),
    Verb("tasks", "list the registry's tasks (and those of --task-files) and their files", "promptworth.cli.data:run_tasks",
         (o.data_dir, o.task_files), prints=True),
    Verb("fetch-data", "download the data files of a study or of some tasks ahead of time, and verify each",
         "promptworth.cli.data:run_fetch_data",
         (these(opt("--configfile", type=Path, help="a study config: its built-in tasks (under PROMPTWORTH_FAST=1 the "
                    "tiny variant's; a task file's task reads its own files) and its data_dir"),
                opt("--tasks", nargs="+", metavar="TASK", help="tasks of the registry (promptworth tasks)")),
          o.data_dir),
         "Get every file the tasks' splits and runs read (the training pool and the evaluation sets) into the data "
         "folder: the download cache (missing files are downloaded from the original sources, or from "
         "$PROMPTWORTH_DATA_ORIGIN, each archive once) or a data mirror (checked only). Each file is verified against "
         "its published sha256; the first that is missing or differs is an error naming it, and a download that "
         "fails leaves nothing. --json prints a list of the files.", prints=True),
)

STUDY = (
    Verb("plan", "print a study's runs and pilot runs still to train and how long they will take, running nothing",
         "promptworth.cli.study:run_plan",
         (these(opt("--configfile", type=Path, required=True, help="the study's config (e.g. config/studies/study.yaml)"),
                opt("--reference", type=Path, nargs="+", default=[], metavar="FOLDER",
                    help="folders of finished run records (searched recursively, e.g. reports/v2/runs reports/v2/lr-grid) "
                         "that calibrate the estimate where the study's own records do not"),
                opt("--threads", type=int, help="threads a training run uses (default: the study's resources; make's "
                    "TRAIN_THREADS)"),
                opt("--at-once", type=int, help="training runs side by side (default: this machine's cores over "
                    "--threads; make's WORKERS)")),),
         "Print a table of the runs and pilot runs the study has still to train, per model, task and method (their "
         "predicted steps and CPU hours), then the plan and its estimate: CPU hours and hours on the clock, which "
         "finished records calibrate it (the study's own first, then --reference), the share extrapolated, and the "
         "runs with no estimate (docs/performance.md, \"Estimating a study before it runs\").", prints=True),
    Verb("progress", "print how many runs of a study are done and about how long the rest will take",
         "promptworth.cli.study:run_progress",
         (these(opt("runs_dir", type=Path, metavar="RUNS_DIR", help="folder of the study's run records"),
                opt("--total", type=int, required=True, help="number of runs in the study"),
                opt("--what", required=True, help="what the records are, as the line names them (e.g. training runs)")),),
         prints=True),
    Verb("stages", "print the stages a study trains in, in order, how many of each stage's runs are finished and "
                   "on which CPU and precision",
         "promptworth.cli.study:run_stages",
         (these(opt("--configfile", type=Path, required=True, help="the study's config (e.g. config/studies/study.yaml)")),),
         "A study's `stages` (its config) order its runs: each stage's before the next's; the runs no stage takes "
         "train last, as the stage `rest` (a study without stages has that one only). Running nothing.",
         prints=True),
    Verb("run-stages", "run a study's command once per stage, in the stages' order, each time for that stage's runs",
         "promptworth.cli.study:run_run_stages",
         (these(opt("--configfile", type=Path, required=True, help="the study's config (e.g. config/studies/study.yaml)"),
                opt("--stage", nargs="+", default=[], metavar="NAME",
                    help="run these stages only (default: every stage)"),
                opt("command", nargs=argparse.REMAINDER, metavar="COMMAND",
                    help="the study's Snakemake command line (after --), e.g. make publish's promptworth pool -- snakemake ...")),),
         "For each stage with a run left to train (promptworth stages), run COMMAND -- RECORD_FILES with the record "
         "files of the stage's runs as Snakemake's targets; stop at the first stage whose command fails and exit with "
         "its status. A study stopped by its budget so stops in its last stages. `make publish` runs the published "
         "study this way."),
    Verb("unlock-stale",
         "before rerunning a study: release the lock of a Snakemake that was killed, if no Snakemake runs here",
         "promptworth.cli.study:run_unlock_stale",
         (these(opt("snakemake", nargs=argparse.REMAINDER, metavar="SNAKEMAKE_COMMAND",
                    help="the Snakemake command line of the study (its program, profile and config)")),),
         "If .snakemake/locks holds a lock and no Snakemake process works in this folder, the lock was left by a run "
         "killed hard: run SNAKEMAKE_COMMAND --unlock. If a Snakemake still runs here, stop with a message naming it. "
         "Without a lock, do nothing."),
    Verb("pool", "run a command (a study) with long-lived training processes that its `promptworth train` jobs use",
         "promptworth.cli.study:run_pool",
         (these(opt("--size", type=int, required=True, help="worker processes (one per training job that runs at once)"),
                opt("--runs-per-gpu", type=int, default=0, metavar="K",
                    help="spread the workers over the visible GPUs, K to a GPU (each worker sees one; --size must be at "
                         "most K x the GPUs; default 0: every worker sees every GPU)"),
                opt("command", nargs=argparse.REMAINDER, metavar="COMMAND", help="the command to run (after --)")),),
         "Start SIZE worker processes, run COMMAND with PROMPTWORTH_POOL set, stop the workers when it ends and exit "
         "with its status. Each `promptworth train` inside COMMAND hands its run to a free worker: no interpreter "
         "start, imports or model set-up per run; the same record (see docs/performance.md)."),
)


def _published() -> tuple[Opt, ...]:
    from promptworth.study.published import STUDIES

    listed = "; ".join(f"{study.name}: {study.about} ({study.config})" for study in STUDIES)
    return (opt("study", choices=tuple(study.name for study in STUDIES), metavar="STUDY",
                help=f"the published study: {listed}"),)


REPRODUCE = Verb(
    "reproduce", "retrain a published study into a fresh folder and compare its records and advantages with the "
    "published ones", "promptworth.cli.reproduce:run_reproduce",
    (_published,
     o.out_dir("the fresh folder (default: results/reproduce/STUDY; never inside reports/)", required=False),
     these(opt("--run", metavar="COMMAND", help="the command line that runs a study, as one string (make reproduce "
               "gives make study's: promptworth pool ... -- snakemake ...); without it, only compare the records "
               "already in the folder"))),
    "Run COMMAND with the published study's config and --config results_dir=OUT_DIR (it trains every run there), "
    "then compare its run and pilot records with the published ones, and the advantage tables of both: on the same "
    "kind of CPU (device and precision) the records must be identical but for their volatile keys, on another the "
    "advantages must agree within their intervals. Writes OUT_DIR/reproduction.md and reproduction.json. Exit "
    "status 0: they agree; 1: they do not, or the study stopped; 2: bad input (docs/reproducing.md); --json prints "
    "reproduction.json.", prints=True)

BACKBONES_AND_METHODS = (
    Verb("tiny-model", "save a tiny randomly initialised backbone (for smoke runs; its scores mean nothing)",
         "promptworth.cli.backbones:run_tiny_model",
         (_tiny_model_options(), o.out_dir("folder to write (config, weights, tokenizer)", renamed_from_out=True)), prints=True),
    Verb("methods", "list the built-in methods: parts, options, default hyperparameters, trainable parameters",
         "promptworth.cli.methods:run_methods",
         (these(opt("--model", help="also count each method's trainable and total parameters on this model "
                    "(a folder, short name or pinned hub model <id>@<revision>, prefetched; loads it once per method)"),
                opt("--task", default="SST-2", help="the task the counts are for: a head's size depends on its "
                    "labels (default: %(default)s)")),
          o.task_files), prints=True),
    Verb("convert-model", "convert an offline backbone (SmolLM2-135M-Instruct, Gemma-3-270M) from its PyPI package's "
         "GGUF file to a safetensors folder", "promptworth.cli.backbones:run_convert",
         (_offline_model, o.out_dir("output folder (default: resources/models/<model>)", required=False,
                                    renamed_from_out=True),
          these(opt("--force", action="store_true", help="succeed quietly if the folder already exists"))), prints=True),
    Verb("prefetch", "download a pinned hub model (<id>@<revision>) before training, which never downloads",
         "promptworth.cli.backbones:run_prefetch",
         (these(opt("--model", required=True, help="a hub model <id>@<revision> (or <id>@unpinned); a folder or short "
                    "name is only checked")),
          o.trust_remote_code,
          o.out("a JSON file naming the model's commit and weights (sha256), for a workflow's rule", required=False)),
         "Download a hub model's config, tokenizer and weights (safetensors, else PyTorch's; with --trust-remote-code "
         "its *.py too) into the Hugging Face cache (HF_HUB_CACHE, HF_HOME), where `promptworth train` and `search` "
         "read it without network access, and compute the sha256 of its weights once (kept beside them). A commit "
         "already cached is not asked of the hub again.", prints=True),
)

TRAIN = (
    Verb("train", "fine-tune one model on one split with one method and write the run record",
         "promptworth.cli.train:run_train",
         (o.run, o.out("run record (JSON) to write"),
          these(opt("--search", type=Path, help="the result file of a search (promptworth search) that a method with the "
                    "extra autowords or autotemplate applies; the record cites it"),
                opt("--learning-rate-from", type=Path, metavar="FILE",
                    help="train at the learning rate a selection file (promptworth select-lr) chose for this task, "
                         "method and model; the record cites it (not with --learning-rate)"),
                opt("--data-seed", type=int, help="recorded in the run record (default: from the split's manifest)"),
                opt("--test-limit", type=int, help="evaluate on a fixed seeded subset of this many test rows"),
                opt("--progress-every", type=float, default=30.0, metavar="SECONDS",
                    help="where no terminal shows a progress bar (a log file), a progress line every SECONDS "
                         "(0: after every step; default %(default)g; docs/training.md)")),
          o.training),
         "Fine-tune a pretrained model on a split folder with a method and write one JSON run record. Nothing is "
         "written when anything fails."),
    Verb("search", "search the label words or template of a method (prompt-autowords, prompt-autotemplate) on a split",
         "promptworth.cli.train:run_search",
         (o.run, o.out("the search's result file (JSON) to write"),
          these(opt("--generator", help="a T5 model folder that generates the template candidates (LM-BFF's "
                    "generator; default: the offline pool of the task's templates with other phrases)")),
          o.training),
         "LM-BFF's searches of label words (a method with the extra autowords) or templates (the extra "
         "autotemplate), on one split with one seed; the method's options set the search, the training settings its "
         "fine-tunes. Writes a JSON result file that `promptworth train --search FILE` applies."),
    Verb("select-lr", "choose a method's learning rate from the dev scores of its pilot runs (a study's lr_grid)",
         "promptworth.cli.train:run_select_lr",
         (these(opt("records", nargs="+", type=Path, metavar="RECORD", help="the pilot runs' records"),
                opt("--task", required=True, help="the task every pilot run trained on"),
                opt("--method", required=True, help="the method every pilot run trained"),
                opt("--size", required=True, type=o.training_size,
                    help="the pilot splits' training-set size (their folders are <size>-<data seed>)"),
                opt("--rates", nargs="+", type=float, metavar="RATE",
                    help="the grid: every record's rate must be one of these, and each must have its pilot runs"),
                opt("--extend-at-edge", action="store_true",
                    help="a choice at the grid's smallest or largest rate extends it once: the records also hold the "
                         "pilot runs at the rate beyond that edge (the grid's ratio there), and the rule chooses over "
                         "the extended grid"),
                opt("--bands", nargs="+", type=o.training_size, metavar="SIZE",
                    help="every pilot size of the study's grid (--size one of them): the file states them and the "
                         "rule that gives each run the rate of the nearest on a log scale")),
          o.out("the selection file (JSON) to write")),
         None),  # the description names the rule: filled in by select_lr_description()
    Verb("worker", "a long-lived training process of a pool (started by promptworth pool, not by hand)",
         "promptworth.cli.train:run_worker",
         (these(opt("--socket", type=Path, required=True, help="the socket to listen on")),),
         "Listen on a UNIX socket and train the runs that `promptworth train` clients of a `promptworth pool` hand "
         "over, one at a time, until the pool stops.", hidden=True),
)


def select_lr_description() -> str:
    return ("Read the run records of a method's pilot runs (one per learning rate, pilot split and train seed) and "
            f"choose its learning rate: {_lr_grid_rule()}. Writes a JSON selection file (every rate's dev scores and "
            "mean, the choice, the rule, the records' paths and sha256) that `promptworth train --learning-rate-from "
            "FILE` applies.")


ANALYSIS = (
    Verb("aggregate", "collect run JSONs into the tidy results table (one row per run)",
         "promptworth.cli.analysis:run_aggregate",
         (o.records,
          o.out("CSV to write (default: %(default)s)", required=False, default=Path("results/runs.csv")),
          these(opt("--peak-gflops", type=float, help="the training machine's matmul peak (make benchmark: "
                    "peak.bf16_matmul_2048_gflops): adds the study-level MFU to the compute line"))), prints=True),
    Verb("advantage", "data advantage of one method over another, per model and task",
         "promptworth.cli.analysis:run_advantage",
         (o.results, o.pair, o.advantage,
          these(opt("--tasks", nargs="+", metavar="TASK", help="only these tasks (default: all)"))), prints=True),
    Verb("import-lescao", "Le Scao & Rush's wandb CSV exports -> tidy results table",
         "promptworth.cli.analysis:run_import_lescao",
         (these(opt("csvs", nargs="+", type=Path, metavar="CSV"),
                opt("--task", help="task name for every file (default: from each file's name, e.g. cb.csv -> CB)")),
          o.out("tidy CSV to write"),
          these(opt("--pattern", type=int, default=0, help="PVP pattern taken as prompt/null (default: %(default)s)"))),
         prints=True),
    Verb("tables", "advantage and LM-BFF-style tables as markdown, LaTeX and CSV", "promptworth.cli.analysis:run_tables",
         (o.results, o.out_dir("folder of the tables"), o.comparisons(), o.advantage), prints=True),
    Verb("paired", "two methods compared row by row on the test rows both scored (the records' per-row predictions): "
         "paired.md and paired.csv", "promptworth.cli.analysis:run_paired",
         (o.records, o.out_dir("folder of paired.md and paired.csv"), o.comparisons(), o.intervals, o.in_place_of),
         "Pair each run of a comparison's treatment with the baseline's run of the same model, task, size, data seed "
         "and train seed, on the test rows both scored (their records' predictions), and write paired.md and "
         "paired.csv: per size, the accuracy gap over the data seeds with a bootstrap interval over the seeds and one "
         "over the seeds and the test rows, and McNemar's exact test of each pair of runs. Records without per-row "
         "predictions (made before issue 30) are left out and counted; with none that has them, the table says so.",
         prints=True),
    Verb("figures", "score vs training-set size per task and an overview grid (PNG+PDF)",
         "promptworth.cli.analysis:run_figures", (o.results, o.out_dir("folder of the figures"), o.pair, o.advantage),
         prints=True),
    Verb("budgets", "the data advantage at each step budget the runs record (training.budgets) and at convergence: "
         "advantage_by_budget.{csv,md} and scores_by_budget.csv, and budgets.png/.pdf",
         "promptworth.cli.analysis:run_budgets",
         (o.results, o.tables_and_figures_dirs, o.comparisons("; the figure shows the first"), o.advantage),
         prints=True),
    Verb("protocol", "whether the runs kept the training protocol, from their records: protocol.md and protocol.csv",
         "promptworth.cli.analysis:run_protocol", (o.records, o.out_dir("folder of protocol.md and protocol.csv")),
         "Per model, task and method: the runs, how they ended (stopped by patience, at the cap, with the share), "
         "those patience stopped before they had read their training set once, those whose reported checkpoint had "
         "read fewer examples than the training set, the minimums patience waited for, and the CPUs and precisions "
         "that made the records; under the table, the totals a reading quotes.", prints=True),
    Verb("flops", "each method's test score against its training FLOPs, beside its curve in data points: cost.md and "
         "cost.csv, cost.png/.pdf", "promptworth.cli.analysis:run_flops",
         (o.records, o.tables_and_figures_dirs, o.confidence, o.in_place_of),
         "From the run records: per model, task, method and size, the mean training and evaluation TFLOP of the "
         "runs (timing.flops) and the mean test score over data seeds with its t interval (cost.md, cost.csv; the "
         "learning-rate pilots the runs' selections cite, as a note), and a figure with a row per model and task: "
         "the score against training examples and against training TFLOP.", prints=True),
    Verb("lmbff-table", "LM-BFF's Table 3 layout: our rows beside the published numbers, with CPU time "
         "(lmbff.md/.csv/.tex and a figure, lmbff.png/.pdf)", "promptworth.cli.analysis:run_lmbff_table",
         (o.results, o.out_dir("folder of the table and its figure"), o.model_filter), prints=True),
    Verb("costs", "wall time, CPU time and peak memory of each training run, from Snakemake's benchmark files",
         "promptworth.cli.analysis:run_costs",
         (these(opt("--runs", nargs="*", type=Path, required=True, metavar="RUN_JSON", help="run records (none: an "
                    "empty table)"),
                opt("--benchmarks", nargs="*", type=Path, required=True, metavar="BENCHMARK_TSV",
                    help="Snakemake benchmark files, one per run record, in the same order")),
          o.out("CSV to write")),
         "Pair each run record with the benchmark of the job that wrote it (same order) and write one CSV row per run: "
         "the run's model, task, method, size and seeds, whether a pool's worker trained it, then wall_s, cpu_s, "
         "mean_load, max_rss_mb, max_vms_mb, max_uss_mb, max_pss_mb, io_in_mb, io_out_mb (empty where Snakemake could "
         "not measure, and but for wall_s for a pooled run: its client's), then the run's own peak_rss_gb from its "
         "record.", prints=True),
)

VERBS: tuple[Verb, ...] = (*DATA, *STUDY, *BACKBONES_AND_METHODS, *TRAIN, *ANALYSIS, REPRODUCE)


def add_verb(subparsers: argparse._SubParsersAction, verb: Verb) -> None:
    description = select_lr_description() if verb.name == "select-lr" else verb.description
    listed = {} if verb.hidden else {"help": verb.help}  # a subcommand without help is not listed
    parser = subparsers.add_parser(verb.name, description=description or verb.help, **listed)
    for option_set in (*verb.options, *((o.json_output,) if verb.prints else ())):
        o.add_options(parser, option_set())
    parser.set_defaults(handler=verb.handler)
