"""The study config (schema and meaning) and the Snakemake DAG it produces."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from promptworth.data.splits import DEFAULT_DEV_POLICY, DEFAULT_K
from promptworth.errors import PromptworthError
from promptworth.cli import main
from promptworth.study.config import SplitsConfig, StudyConfig
from promptworth.study.load import load_study
from promptworth.study.planning import plan

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
DEFAULT = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
# A plain ladder study that the tests below change one key at a time: two tasks, four sizes, two
# data seeds, prompt vs head, a fixed number of steps (the default study's shape before it took
# the lr_grid and patience; written here so that redesigning the default study changes no test).
BASE = yaml.safe_load("""
results_dir: results
model: smollm2-135m-instruct
tasks: [SST-2, CB]
methods: [prompt, head]
train_seeds: [1]
splits: {kind: ladder, sizes: [10, 20, 50, 100], data_seeds: [1, 2], dev_policy: fixed, dev_size: 32,
         test_limit: 200}
training: {protocol: epochs, epochs: 10, min_steps: 10, max_steps: 25, eval_every: 10, learning_rate: 1.0e-5,
           batch_size: 8, eval_batch_size: 32, max_length: 128, precision: auto}
comparisons: ["prompt:head"]
""")


def snakemake(*args: str, cwd: Path = REPO, timeout: float = 120) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--cores", "1", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def job_counts(output: str) -> dict[str, int]:
    table = output.split("Job stats:")[1]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.MULTILINE)}


@pytest.mark.parametrize("name", sorted(str(p.relative_to(REPO / "config")) for p in (REPO / "config").rglob("*.yaml")))
def test_every_shipped_config_is_valid(name):
    config = yaml.safe_load((REPO / "config" / name).read_text())
    study = load_study(config, SCHEMA)
    assert plan(study)


# Job counts worked out by hand from each config (sizes x data seeds x methods per task); one
# costs table of the training jobs per study that trains.
SHIPPED_DAGS = {
    # the default (no --configfile): SST-2, 4 sizes x 2 data seeds; the prompt at 0, both methods at
    # 16, 64 and 256 (2 + 12 runs); the lr_grid: 2 rates x 2 methods at 16 on data seed 1, a selection each
    "config.yaml": {"split": 8, "train": 14, "lr_grid_train": 4, "select_lr": 2, "advantage": 1, "costs": 1},
    # the second edition. SmolLM2: SST-2 at 0 (prompt, prompt-lora), at 10/100/1000 its 7 methods, at
    # 32/320 prompt and head: (2 + 21 + 4) x 2 data seeds = 54; mr, subj, trec: (1 + 2 x 5) x 2 = 22
    # each; RTE at 0 and 100 (1 + 2) x 2, at all (one data seed) 2: 8. Gemma: SST-2 and trec as mr:
    # 2 x 22. 54 + 66 + 8 + 44 = 172. Splits (shared by the models): 4 tasks x 6 sizes x 2 + RTE 2 x 2
    # + 1 = 53. The lr_grid at 100: SmolLM2 7 + 4 x 2 (task, method) pairs, Gemma 2 x 2 = 19
    # selections of 2 rates
    "studies/study-v2.yaml": {"split": 53, "train": 172, "lr_grid_train": 38, "select_lr": 19, "advantage": 5,
                              "budgets": 1, "costs": 1},
    # the third edition. SmolLM2, SST-2 (train seeds 1 and 2 for prompt and head): at 0 the prompt 5 x 2,
    # zeroshot-calibrated 5, the two controls 3 each = 21; at 10 and 32 prompt and head 2 x 5 x 2,
    # SetFit 5, ICL 3, prompt-tfs and head-tfs 2 x 3, the three controls 3 x 3 = 43 each; at 100 20 + 5 + 9
    # = 34; at 320 and 1000 20 + 5 = 25 each: 191. mr, subj: the prompt at 0 5, at 5 sizes (2 + 1) x 5
    # = 80 each. trec: at 0 5 + 5; at 10 and 32 10 + 5 + 3 + 6 = 24 each; at 100, 320, 1000 15 each:
    # 103. RTE: 5 + 6 sizes x 10 = 65. Gemma (3 data seeds, prompt and head): SST-2 and trec 3 + 5 x 6 =
    # 33 each, RTE 3 + 6 x 6 = 39. 191 + 160 + 103 + 65 + 105 = 624. Splits: 4 tasks x 6 sizes x 5
    # seeds + RTE 7 x 5 = 155, and the true few-shot policy's 2 tasks x 2 sizes x 3 seeds = 12. The
    # lr_grid, 3 rates per (model, task, method, band): SmolLM2 prompt and head 5 x 2 x 2 bands, the
    # true few-shot pair 2 x 2 x 1 band, the controls 3 x 1 band, Gemma 3 x 2 x 2 bands = 39 selections,
    # 117 pilots; each selection first over the grid alone (select_lr_grid, the extension's checkpoint).
    # The tables of what its records keep: paired, protocol, cost
    "studies/study.yaml": {"split": 155, "split_by_policy": 12, "train": 624, "lr_grid_train": 117,
                           "select_lr_grid": 39, "select_lr": 39, "advantage": 11, "paired": 1, "protocol": 1,
                           "cost": 1, "costs": 1},
    # the first edition: 4 tasks x 5 sizes x 4 data seeds; x 3 methods
    "studies/study-v1.yaml": {"split": 80, "train": 240, "advantage": 3, "costs": 1},
    # sizes per task: BoolQ 19, CB 9, COPA 11, MultiRC 19, RTE 16 (its pool holds 2,490 rows: no
    # 3,200), WiC 17, WSC 11, MNLI 10 = 112, x 4 data seeds; 3 methods, but no null verbalizer for
    # COPA and WSC: (90 x 3 + 22 x 2) x 4
    "studies/paper-lescao.yaml": {"split": 448, "train": 1256, "advantage": 3, "costs": 1, "prefetch": 1},
    # 15 tasks x 5 published seeds (K = 16 splits), x 2 methods
    # roberta-large, pinned: downloaded once (rule prefetch)
    "studies/paper-lmbff.yaml": {"kshot": 75, "train": 150, "advantage": 1, "costs": 1, "prefetch": 1},
    # SST-2's 2 visible splits x (2 full fine-tunings + 5 tunings x 3 learning rates)
    "studies/method-defaults.yaml": {"kshot": 2, "train": 34, "advantage": 1, "costs": 1},
    # 2 tasks x 5 published seeds (K = 16 splits), x 12 methods
    "studies/strategies.yaml": {"kshot": 10, "train": 120, "advantage": 1, "costs": 1},
}


@pytest.mark.parametrize("name", sorted(SHIPPED_DAGS))
def test_dry_run_of_each_shipped_study_lists_its_dag(name, tmp_path):
    configfile = [] if name == "config.yaml" else ["--configfile", str(REPO / "config" / name)]
    result = snakemake("-n", *configfile, "--config", f"results_dir={tmp_path}/results")
    assert result.returncode == 0, result.stderr
    counts = job_counts(result.stdout)
    for rule, expected in SHIPPED_DAGS[name].items():
        assert counts[rule] == expected, (rule, counts)
    assert counts["aggregate"] == counts["tables"] == counts["figures"] == 1


def test_with_runs_dir_nothing_trains_even_when_forced(tmp_path):
    results = tmp_path / "results"
    record = results / "runs" / "smollm2-135m-instruct" / "SST-2" / "prompt" / "16-1-1.json"
    record.parent.mkdir(parents=True)
    record.write_text("{}", encoding="utf-8")
    result = snakemake("-n", "--forceall", "--config", f"results_dir={results}", f"runs_dir={results}/runs")
    assert result.returncode == 0, result.stderr
    counts = job_counts(result.stdout)
    assert "train" not in counts and "split" not in counts
    assert counts["aggregate"] == counts["tables"] == counts["figures"] == counts["advantage"] == 1


def test_finished_runs_stay_finished_when_their_inputs_are_rebuilt(tmp_path):
    """A fresh clone of a published study: its records are older than the model converted again
    and the splits regenerated after the checkout. Resuming must train none of them again."""
    study = load_study(DEFAULT, SCHEMA)
    records = [tmp_path / f"results/runs/{r.model}/{r.task}/{r.method}/{r.size}-{r.data_seed}-{r.train_seed}.json"
               for r in plan(study)]
    for path in records:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}", encoding="utf-8")
        os.utime(path, (1e9, 1e9))  # 2001: older than anything below
    (tmp_path / f"resources/models/{study.models[0]}").mkdir(parents=True)
    for run in plan(study):
        manifest = tmp_path / f"results/splits/{run.task}/{run.size}-{run.data_seed}/manifest.json"
        manifest.parent.mkdir(parents=True, exist_ok=True)
        manifest.write_text("{}", encoding="utf-8")
    args = ("--configfile", str(REPO / "config" / "config.yaml"), "--config", "results_dir=results")
    assert "Nothing to be done" in snakemake("-n", *args, "--", "prepare", cwd=tmp_path).stdout
    result = snakemake("-n", *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    counts = job_counts(result.stdout)
    assert "train" not in counts and "split" not in counts, counts
    assert counts["aggregate"] == 1
    records[0].unlink()  # a missing run is trained, and only it
    assert job_counts(snakemake("-n", *args, cwd=tmp_path).stdout)["train"] == 1


def test_dry_run_rejects_a_bad_config_in_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    config = copy.deepcopy(BASE)
    config["splits"]["sizes"] = [10, 10]
    bad.write_text(yaml.safe_dump(config))
    result = snakemake("-n", "--configfile", str(bad))
    assert result.returncode != 0
    assert "promptworth: error: config.splits.sizes: [10, 10] has non-unique elements" in result.stderr
    assert "Traceback" not in result.stderr


def with_change(path: str, value) -> dict:
    config = copy.deepcopy(BASE)
    *parents, last = path.split(".")
    node = config
    for key in parents:
        node = node[key]
    node[last] = value
    return config


@pytest.mark.parametrize(
    "path, value, message",
    [
        ("bogus", 1, r"config \(top level\): Additional properties are not allowed \('bogus' was unexpected\)"),
        ("training.learning_rte", 1e-5, r"config.training: Additional properties are not allowed \('learning_rte'"),
        ("training.batch_size", "eight", r"config.training.batch_size: 'eight' is not of type 'integer'"),
        ("splits.sizes", [10, -5], r"config.splits.sizes\[1\]: .*-5 is less than the minimum of 0"),
        ("splits.sizes", [20, 20], r"config.splits.sizes: \[20, 20\] has non-unique elements"),
        ("methods", ["prompt", "magic"], r"config: methods: unknown method 'magic'; known methods: prompt, head, null"),
        ("methods", ["prompt", "Magic"], r"config.methods\[1\]: 'Magic' does not match"),
        ("train_seeds", "1", r"config.train_seeds: '1' is not of type 'array'"),
        ("tasks", ["SST-3"], r"unknown task 'SST-3'"),
        ("comparisons", ["prompt:null"], r"comparison prompt:null names method 'null', which is not in methods"),
        ("templates", {"SST-2": "nope"}, r"templates.SST-2 is 'nope', not one of SST-2's templates"),
        ("splits.dev_size", None, r"config.splits.dev_size: None is not of type 'integer'"),
        # what used to pass validation and fail in a job, or after all training
        ("training.warmup_ratio", 1, r"config.training.warmup_ratio: 1 is greater than or equal to the maximum of 1"),
        ("training.max_length", 4, r"config.training.max_length: 4 is less than the minimum of 8"),
        ("training.min_steps", 1000, r"config: training: training setting min_steps has an invalid value: 1000"),
        ("training.patience", -1, r"config.training.patience: -1 is less than the minimum of 0"),
        ("training.patience", 1.5, r"config.training.patience: 1.5 is not of type 'integer'"),
        ("training_by_method", {"head": {"patience": "3"}},
         r"config.training_by_method.head.patience: '3' is not of type 'integer'"),
        ("training.learning_rate", float("inf"), r"training setting learning_rate must be a finite number, got inf"),
        ("training.epochs", float("nan"), r"training setting epochs must be a finite number, got nan"),
        ("comparisons", ["prompt:prompt"], r"config: comparison prompt:prompt compares a method with itself"),
        ("splits.sizes", [10, 16.0], r"config.splits.sizes\[1\]: .*16.0 is not of type 'integer'"),
        ("train_seeds", [1.0], r"config.train_seeds\[0\]: 1.0 is not of type 'integer'"),
        ("train_seeds", [-1], r"config: train_seeds item -1: a seed must be an integer from 0 to 4294967295"),
        ("splits.data_seeds", [2**32], r"config: splits.data_seeds item 4294967296: a seed must be an integer"),
        ("data_dir", "/nowhere/at/all", r"config: data_dir '/nowhere/at/all' is not a folder"),
        ("data_dir", "", r"config.data_dir: '' should be non-empty"),
        ("runs_dir", "/nowhere/at/all", r"config: runs_dir '/nowhere/at/all' is not a folder"),
        # issue 28: a traceback in a rule, or a config check that let it through
        ("comparisons", [], r"config.comparisons: \[\] should be non-empty"),
        ("results_dir", "/etc/hostname/results", r"config: results_dir '/etc/hostname/results': /etc/hostname is a file"),
        ("splits.sizes", [10, 300], r"config: splits of CB: training size 300 exceeds the pool \(250 rows, 32 of them "
                                    r"kept for dev: at most 218 to train on\)"),
        ("splits.dev_size", 10**9, r"config: splits of SST-2: dev_size 1,000,000,000 leaves no training row: the pool "
                                   r"holds 6,920 rows"),
        ("lr_grid", {"rates": {"prompt": [1e-5, 3e-5]}, "size": 240},
         r"config: splits of CB: training size 240 exceeds the pool"),
    ],
)
def test_bad_config_is_one_clear_error(path, value, message):
    with pytest.raises(PromptworthError, match=message):
        load_study(with_change(path, value), SCHEMA)


def test_a_ladder_of_a_pool_the_mirror_does_not_hold_is_checked_by_its_split_job(tmp_path):
    """Without the pool at hand (no mirror yet: the split job downloads it) sizes are not checked."""
    config = with_change("data_dir", str(tmp_path))
    config["splits"]["sizes"] = [10, 10**6]
    assert load_study(config, SCHEMA).splits.sizes == (10, 10**6)


def test_a_runs_dir_without_the_study_s_records_is_one_clear_error(tmp_path):
    """(before: the aggregate job failed with "the following arguments are required")"""
    (tmp_path / "other.json").write_text("{}", encoding="utf-8")
    result = snakemake("-n", "--config", f"results_dir={tmp_path}/results", f"runs_dir={tmp_path}")
    assert result.returncode != 0
    assert (f"promptworth: error: config: runs_dir '{tmp_path}' holds no record of the study's runs (they are looked "
            "for as <runs_dir>/<model>/<task>/<method>/<size>-<data seed>-<train seed>.json; its 1 JSON file(s) are "
            "none of them)") in result.stderr
    assert "Traceback" not in result.stderr


def test_patience_is_a_training_setting_like_the_others():
    """Early stopping reaches each run's flags through training, training_by_method and by_size;
    unset, no run's flags change (so no finished run is retrained)."""
    from promptworth.training.settings import training_args

    unset = load_study(BASE, SCHEMA)
    assert not any("--patience" in training_args(unset.training_for(m)) for m in unset.methods)
    config = copy.deepcopy(BASE)
    config["training"]["patience"] = 3
    config["training_by_method"] = {"head": {"patience": 0}}
    config["by_size"] = {"100": {"training": {"patience": 5}}}
    study = load_study(config, SCHEMA)
    flags = {(m, size): training_args(study.training_for(m, size)) for m in ("prompt", "head") for size in (10, 100)}
    patience = {key: args[args.index("--patience") + 1] for key, args in flags.items()}
    assert patience == {("prompt", 10): "3", ("head", 10): "0", ("prompt", 100): "5", ("head", 100): "5"}
    args = flags[("prompt", 10)]
    at = args.index("--patience")
    assert args[:at] + args[at + 2:] == training_args(unset.training_for("prompt"))  # nothing else changes


def test_a_study_with_budgets_records_them_in_every_run_and_draws_them(tmp_path):
    """Budgets reach each run's flags (one comma-separated flag), and only a study with budgets has
    the budgets rule and its outputs among its targets."""
    from promptworth.training.settings import training_args

    assert load_study(BASE, SCHEMA).budgets() == ()
    config = copy.deepcopy(BASE)
    config["training"].update(schedule="constant", budgets=[20, 10])
    config["by_size"] = {"100": {"training": {"budgets": [10, 30]}}}
    study = load_study(config, SCHEMA)
    assert study.budgets() == (10, 20, 30)
    flags = training_args(study.training_for("head", 10))
    assert flags[flags.index("--budgets") + 1] == "10,20" and flags[flags.index("--schedule") + 1] == "constant"
    path = tmp_path / "budgets.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    result = snakemake("-n", "-p", "--configfile", str(path), "--config", f"results_dir={tmp_path}/results")
    assert result.returncode == 0, result.stderr
    assert job_counts(result.stdout)["budgets"] == 1
    assert f"{tmp_path}/results/figures/budgets.png" in result.stdout.split("rule all:")[1]
    assert result.stdout.count("--budgets 10,20 ") == 24 and result.stdout.count("--budgets 10,30 ") == 8
    assert f"promptworth budgets {tmp_path}/results/runs.csv" in result.stdout
    plain = snakemake("-n", "--config", f"results_dir={tmp_path}/plain")
    assert plain.returncode == 0 and "budgets" not in job_counts(plain.stdout)
    bad = copy.deepcopy(config)
    bad["training"]["budgets"] = [15]
    with pytest.raises(PromptworthError, match="config: training: training setting budgets: 15 is not a multiple of eval_every 10"):
        load_study(bad, SCHEMA)


def test_size_zero_is_planned_only_for_the_methods_that_run_untrained(tmp_path):
    """The zero-shot point joins every prompt curve; a head has none (its head is untrained)."""
    config = with_change("splits.sizes", [0, 10, 100])
    study = load_study(config, SCHEMA)
    runs = {(run.task, run.method, run.size) for run in plan(study)}
    assert {(m, size) for task, m, size in runs if task == "CB"} == {
        ("prompt", 0), ("prompt", 10), ("head", 10), ("prompt", 100), ("head", 100)}
    assert study.methods_for("CB", 0) == ("prompt",) and study.methods_for("CB", 10) == ("prompt", "head")
    path = tmp_path / "zero.yaml"
    path.write_text(yaml.safe_dump(config))
    result = snakemake("-n", "-p", "--configfile", str(path), "--config", f"results_dir={tmp_path}/zero")
    assert result.returncode == 0, result.stderr
    counts = job_counts(result.stdout)
    assert counts["split"] == 2 * 3 * 2 and counts["train"] == 2 * 5 * 2  # tasks x sizes x seeds; x runs
    assert any("--sizes 0 " in line for line in result.stdout.splitlines() if "promptworth split " in line)
    zero = [line for line in result.stdout.splitlines() if "promptworth train " in line and "/0-1 " in line]
    assert len(zero) == 2 and all("--method prompt " in line for line in zero)


@pytest.mark.parametrize("change, message", [
    ({"methods": ["head", "null"], "comparisons": ["null:head"]},
     r"config: task SST-2 has size 0 \(the zero-shot point\), but none of its methods runs untrained "
     r"\(head: its new head is untrained; null: its null verbalizer"),
    ({"by_size": {"0": {"methods": ["prompt", "head"]}}},
     "config: by_size.0.methods: method head cannot run at size 0: its new head is untrained"),
    ({"splits": {**BASE["splits"], "sizes": [0, 10], "dev_policy": "same_as_train"}},
     "config: splits.dev_policy: dev policy 'same_as_train' draws as many dev rows as training rows: size 0 "
     "would have no dev set"),
])
def test_a_size_zero_nobody_can_run_is_one_clear_error(change, message):
    config = with_change("splits.sizes", [0, 10])
    config.update(change)
    with pytest.raises(PromptworthError, match=message):
        load_study(config, SCHEMA)


LR_GRID = {"rates": {"prompt": [1e-5, 3e-5], "head": [1e-5, 1e-4, 1e-3]}, "size": 20}


def test_an_lr_grid_plans_pilots_a_selection_and_runs_at_the_chosen_rate(tmp_path):
    """Per task and method of the grid: a pilot run per rate (the pilot splits: the study's first
    data seed), one selection, and every run of the method above size 0 at the chosen rate."""
    config = with_change("lr_grid", {**LR_GRID, "data_seeds": [1, 3]})
    config["splits"]["sizes"] = [0, 10, 100]
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(config))
    result = snakemake("-n", "-p", "--configfile", str(path), "--config", f"results_dir={tmp_path}/grid")
    assert result.returncode == 0, result.stderr
    counts = job_counts(result.stdout)
    # 2 tasks x (2 + 3 rates) x 2 pilot seeds; 2 tasks x 2 methods; sizes 10 and 100 of seed 1 and 2, 20 of seed 3
    assert (counts["lr_grid_train"], counts["select_lr"], counts["train"]) == (20, 4, 2 * 2 * (1 + 2 + 2))
    assert counts["split"] == 2 * (3 * 2 + 2)  # the pilot size 20 of data seeds 1 and 3
    lines = result.stdout.splitlines()
    pilots = [line for line in lines if "promptworth train " in line and "/lr-grid/" in line]
    assert len(pilots) == 20 and all("--split-dir " in line and "/20-" in line for line in pilots)
    head = [line for line in pilots if "/CB/head/lr-0.0001/20-3-1.json" in line]
    assert len(head) == 1 and "--learning-rate 0.0001 " in head[0] and "--learning-rate-from" not in head[0]
    # progress counts every model's pilots against all of them, and names them as pilots
    assert all(f"promptworth progress {tmp_path}/grid/lr-grid --total 20 --what 'pilot runs of the lr_grid'" in line
               for line in pilots)
    runs = [line for line in lines if "promptworth train " in line and "/runs/" in line]
    chosen = [line for line in runs if "/0-" not in line]
    assert all("--learning-rate-from " in line and "--learning-rate " not in line for line in chosen)
    assert any(f"--learning-rate-from {tmp_path}/grid/lr/smollm2-135m-instruct/CB/head.json " in line for line in chosen)
    zero = [line for line in runs if "/0-" in line]  # no step: the study's rate, no selection
    assert zero and all("--learning-rate 1e-05 " in line and "--learning-rate-from" not in line for line in zero)
    selects = [line for line in lines if "promptworth select-lr " in line]
    assert len(selects) == 4 and all("--size 20 " in line for line in selects)
    assert any("--method head --size 20 --rates 1e-05 0.0001 0.001 " in line for line in selects)
    from promptworth.study.planning import plan_summary

    summary = plan_summary(load_study(config, SCHEMA), [])
    assert "[promptworth] learning-rate grid: 20 pilot runs choose the rate of prompt, head on dev first" in summary


def test_each_size_band_chooses_its_rate_and_each_run_takes_its_band_s(tmp_path):
    """Pilots at 10 and 100: sizes 10 and 20 take the rate chosen at 10 (20 is nearer 10 than 100 on
    a log scale), 50 and 100 the rate chosen at 100; a selection file per band, which states them."""
    config = with_change("lr_grid", {"rates": {"head": [1e-5, 1e-4, 1e-3]}, "sizes": [10, 100]})
    config["splits"]["sizes"] = [0, 10, 20, 50, 100]
    path = tmp_path / "bands.yaml"
    path.write_text(yaml.safe_dump(config))
    result = snakemake("-n", "-p", "--configfile", str(path), "--config", f"results_dir={tmp_path}/b")
    assert result.returncode == 0, result.stderr
    counts = job_counts(result.stdout)
    # 2 tasks x 2 bands x 3 rates on data seed 1; a selection per task and band; 2 x 2 x 4 + 2 x 2 x 5 runs
    assert (counts["lr_grid_train"], counts["select_lr"], counts["train"]) == (12, 4, 16 + 20)
    assert "select_lr_grid" not in counts  # no extension asked for
    lines = result.stdout.splitlines()
    lr = f"{tmp_path}/b/lr/smollm2-135m-instruct/CB/head"
    runs = {re.search(r"/runs/\S+/head/(\d+)-", line).group(1): line for line in lines
            if "promptworth train " in line and "/runs/smollm2-135m-instruct/CB/head/" in line}
    bands = {size: re.search(r"--learning-rate-from (\S+) ", line).group(1) for size, line in runs.items()}
    assert bands == {"10": f"{lr}/10.json", "20": f"{lr}/10.json", "50": f"{lr}/100.json", "100": f"{lr}/100.json"}
    selects = [line for line in lines if "promptworth select-lr " in line and "/CB/head/" in line]
    assert len(selects) == 2 and all("--bands 10 100 --out " in line for line in selects)
    assert any("--size 10 " in line and f"--out {lr}/10.json" in line for line in selects)
    pilots = [line for line in lines if "promptworth train " in line and "/lr-grid/" in line]
    assert sorted(re.search(r"/lr-[^/]+/(\d+)-1-1.json", line).group(1) for line in pilots) == ["10"] * 6 + ["100"] * 6
    from promptworth.study.planning import plan_summary

    summary = plan_summary(load_study(config, SCHEMA), [])
    assert "12 pilot runs choose the rate of head on dev first, a rate per size band (pilot sizes 10, 100)" in summary


@pytest.mark.parametrize("grid, message", [
    ({"rates": {"prompt": [1e-5]}, "size": 10}, r"config.lr_grid.rates.prompt: \[1e-05\] is too short"),
    ({"rates": {"prompt": [1e-5, 0]}, "size": 10}, r"config.lr_grid.rates.prompt\[1\]: 0 is less than or equal"),
    ({"rates": {"prompt": [1e-5, 2e-5]}, "size": 0}, r"config.lr_grid.size: .*0 is less than or equal to the minimum of 0"),
    ({"rates": {"prompt": [1e-5, 2e-5]}}, r"config.lr_grid: 'size' is a required property or 'sizes' is a required"),
    ({"rates": {"prompt": [1e-5, 2e-5]}, "size": 10, "sizes": [10, 100]},
     r"config: lr_grid: give size \(one pilot size\) or sizes, not both"),
    ({"rates": {"prompt": [1e-5, 2e-5]}, "sizes": [10, 0]}, r"config.lr_grid.sizes\[1\]: .*0 is less than or equal"),
    ({"rates": {"magic": [1e-5, 2e-5]}, "size": 10}, r"config: lr_grid.rates.magic: unknown method 'magic'"),
    ({"rates": {"null": [1e-5, 2e-5]}, "size": 10}, r"config: lr_grid.rates.null: the study does not train method null"),
    ({"rates": {"prompt": [1e-5, 2e-5]}, "size": 10, "data_seeds": [-1]},
     r"config: lr_grid.data_seeds item -1: a seed must be an integer"),
])
def test_a_bad_lr_grid_is_one_clear_error(grid, message):
    with pytest.raises(PromptworthError, match=message):
        load_study(with_change("lr_grid", grid), SCHEMA)


def test_the_lr_grid_s_methods_train_and_only_the_grid_sets_their_rate():
    base = with_change("lr_grid", {"rates": {"prompt": [1e-5, 2e-5]}, "size": 10})
    for change, message in (
        ({"training_by_method": {"prompt": {"learning_rate": 1e-4}}},
         "config: training_by_method.prompt.learning_rate: the lr_grid chooses prompt's learning rate"),
        ({"by_size": {"10": {"training": {"learning_rate": 1e-4}}}},
         "config: by_size.10.training.learning_rate: the lr_grid chooses prompt's learning rate"),
        ({"methods": ["prompt", "head", "zeroshot"], "lr_grid": {"rates": {"zeroshot": [1e-5, 2e-5]}, "size": 10}},
         "config: lr_grid.rates.zeroshot: method zeroshot takes no training step"),
        ({"methods": ["prompt", "head", "prompt-autowords"], "lr_grid": {"rates": {"prompt-autowords": [1e-5, 2e-5]}, "size": 10}},
         "config: lr_grid.rates.prompt-autowords: method prompt-autowords applies a search's result"),
        ({"tasks": ["SST-2"], "splits": {"kind": "kshot", "k": 16, "data_seeds": [13]}},
         r"config: lr_grid.size of a kshot study is K \(16\) or 'all', got 10"),
    ):
        with pytest.raises(PromptworthError, match=message):
            load_study({**base, **change}, SCHEMA)
    study = load_study(base, SCHEMA)
    assert study.pilot_seeds() == ((1,), (1,))  # the study's first of each
    assert "learning_rate" not in study.run_training("prompt", 10) and study.run_training("head", 10)["learning_rate"] == 1e-5
    assert study.run_training("prompt", 0) == study.training_for("prompt", 0)  # no step at size 0: its set rate
    assert study.pilot_training("prompt", 2e-5, 10) == {**study.training_for("prompt", 10), "learning_rate": 2e-5}


@pytest.mark.slow
def test_a_tiny_study_chooses_its_rate_on_dev_then_trains_at_it(tiny_study):
    """For real, on the tiny model (the shared tiny study: conftest.tiny_study): pilots, the
    selection, the runs that cite it; a rerun reuses it."""
    results = tiny_study.folder / "results"
    selection = json.loads((results / "lr/tiny-llama/SST-2/prompt.json").read_text())
    pilots = {run["learning_rate"]: run["dev_score"] for run in selection["runs"]}
    assert set(pilots) == {1e-4, 3e-2} and selection["learning_rate"] in pilots
    assert len(list((results / "lr-grid").rglob("*.json"))) == 2
    run = json.loads((results / "runs/tiny-llama/SST-2/prompt/8-1-1.json").read_text())
    assert run["hyperparameters"]["learning_rate"] == selection["learning_rate"]
    assert run["lr_selection"]["file"] == "results/lr/tiny-llama/SST-2/prompt.json"
    head = json.loads((results / "runs/tiny-llama/SST-2/head/8-1-1.json").read_text())
    zero = json.loads((results / "runs/tiny-llama/SST-2/prompt/0-1-1.json").read_text())
    assert head["lr_selection"] is None and zero["lr_selection"] is None and zero["timing"]["steps"] == 0


@pytest.mark.slow
def test_a_choice_at_the_grid_s_edge_adds_the_pilots_beyond_it_and_only_then(tiny_study, tmp_path, monkeypatch):
    """The shared tiny study with a grid of three rates that extends at its edge, its pilot records
    made by hand (the grid's middle rate a copy of its first, the dev scores set to drive the
    choice). The dry run shows the pilot beyond the edge only once the choice over the grid alone
    (the checkpoint select_lr_grid) is at an edge, and the rate beyond it is the grid's ratio on."""
    study = tiny_study.copy(tmp_path / "study")
    config = yaml.safe_load((study / "tiny.yaml").read_text())
    config["lr_grid"] = {"rates": {"prompt": [1.0e-4, 1.0e-3, 3.0e-2]}, "size": 8, "extend_at_edge": True}
    configfile = study / "edge.yaml"
    configfile.write_text(yaml.safe_dump(config))
    pilots = Path("results/lr-grid/tiny-llama/SST-2/prompt")
    grid_choice, selection = Path("results/lr/tiny-llama/SST-2/prompt.grid.json"), study / "results/lr/tiny-llama/SST-2/prompt.json"
    selection.unlink()  # chosen from the old grid
    monkeypatch.chdir(study)
    first = json.loads((pilots / "lr-0.0001/8-1-1.json").read_text())

    def dry_run(scores: dict[str, float]) -> tuple[dict[str, int], list[str]]:
        for rate, score in scores.items():
            record = {**first, "dev_score": score, "hyperparameters": {**first["hyperparameters"], "learning_rate": float(rate)}}
            (pilots / f"lr-{rate}").mkdir(exist_ok=True)
            (pilots / f"lr-{rate}" / "8-1-1.json").write_text(json.dumps(record))
        files = [str(pilots / f"lr-{rate}" / "8-1-1.json") for rate in scores]
        assert main(["select-lr", *files, "--task", "SST-2", "--method", "prompt", "--size", "8",
                     "--rates", *scores, "--out", str(grid_choice)]) == 0
        result = snakemake("-n", "-p", "--configfile", str(configfile), cwd=study)
        assert result.returncode == 0, result.stderr[-3000:]
        return job_counts(result.stdout), result.stdout.splitlines()

    counts, lines = dry_run({"0.0001": 0.4, "0.001": 0.9, "0.03": 0.5})  # the middle rate: no extension
    assert "lr_grid_train" not in counts and counts["select_lr"] == 1
    assert any("promptworth select-lr " in line and "--extend-at-edge --out" in line for line in lines)
    counts, lines = dry_run({"0.0001": 0.4, "0.001": 0.5, "0.03": 0.9})  # the largest: one rate beyond, 0.03 x 30
    assert counts["lr_grid_train"] == 1 and counts["select_lr"] == 1
    beyond = [line for line in lines if "promptworth train " in line and "/lr-grid/" in line]
    assert len(beyond) == 1 and "/lr-0.9/8-1-1.json" in beyond[0] and "--learning-rate 0.9 " in beyond[0]
    select = next(line for line in lines if "promptworth select-lr " in line)
    assert all(f"/lr-{rate}/8-1-1.json" in select for rate in ("0.0001", "0.001", "0.03", "0.9"))
    grid_choice.unlink()  # before the choice over the grid alone: the checkpoint runs first
    result = snakemake("-n", "--configfile", str(configfile), cwd=study)
    assert result.returncode == 0 and job_counts(result.stdout)["select_lr_grid"] == 1, result.stderr[-3000:]


def test_kshot_study_needs_lmbff_tasks():
    config = with_change("splits", {"kind": "kshot", "k": 16, "data_seeds": [13, 21]})
    with pytest.raises(PromptworthError, match="CB is not an LM-BFF task"):
        load_study(config, SCHEMA)
    config["tasks"] = ["SST-2", "RTE"]
    study = load_study(config, SCHEMA)
    assert {run.size for run in plan(study)} == {16}


def test_a_kshot_study_adds_the_full_data_setting_for_the_methods_named_at_that_size(tmp_path):
    config = with_change("splits", {"kind": "kshot", "k": 16, "data_seeds": [13, 42], "sizes": [16, "all"]})
    config.update(tasks=["SST-2"], methods=["prompt", "head"], comparisons=["prompt:head"],
                  by_size={"all": {"methods": ["head"], "data_seeds": [42], "training": {"max_steps": 7, "min_steps": 1}}})
    study = load_study(config, SCHEMA)
    runs = {(run.method, run.size, run.data_seed) for run in plan(study)}
    assert runs == {("prompt", 16, 13), ("head", 16, 13), ("prompt", 16, 42), ("head", 16, 42), ("head", "all", 42)}
    assert study.training_for("head", "all")["max_steps"] == 7
    assert study.training_for("head", 16) == study.training_for("head")
    path = tmp_path / "full.yaml"
    path.write_text(yaml.safe_dump(config))
    result = snakemake("-n", "-p", "--configfile", str(path), "--config", f"results_dir={tmp_path}/full")
    assert result.returncode == 0, result.stderr
    kshots = [line for line in result.stdout.splitlines() if "promptworth kshot " in line]
    assert sum("--k 16 --full " in line for line in kshots) == 1  # by_size's one data seed
    trains = [line for line in result.stdout.splitlines() if "promptworth train " in line]
    assert [("--max-steps 7 " in line) for line in trains if "kshot/SST-2/all-42" in line] == [True]
    assert not any("--max-steps 7 " in line for line in trains if "/16-" in line)
    for change, message in (({"sizes": [8, "all"]}, "splits.sizes of a kshot study are K"),):
        bad = with_change("splits", {"kind": "kshot", "k": 16, "data_seeds": [13], **change})
        bad.update(tasks=["SST-2"])
        with pytest.raises(PromptworthError, match=message):
            load_study(bad, SCHEMA)
    for by_size, message in (({"32": {"methods": ["head"]}}, "by_size names size '32'"),
                             ({"all": {"steps": 3}}, r"config.by_size.all: Additional properties"),
                             ({"all": {"methods": ["nope"]}}, "by_size.all.methods: unknown method 'nope'"),
                             ({"all": {"training": {"max_steps": 0}}}, "by_size.all"),):
        with pytest.raises(PromptworthError, match=message):
            load_study({**config, "by_size": by_size}, SCHEMA)


def test_a_kshot_study_s_runs_take_its_test_limit_and_a_ladder_s_splits_hold_it(tmp_path):
    """LM-BFF's K-shot split files keep the whole test set: the runs draw the subset themselves."""
    kshot = copy.deepcopy(BASE)
    kshot["tasks"] = ["SST-2"]
    kshot["splits"] = {"kind": "kshot", "k": 16, "data_seeds": [42], "test_limit": 300}
    ladder = copy.deepcopy(BASE)
    ladder["splits"]["test_limit"] = 300
    for name, config in (("kshot", kshot), ("ladder", ladder)):
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config))
        result = snakemake("-n", "-p", "--configfile", str(path), "--config", f"results_dir={tmp_path}/{name}")
        assert result.returncode == 0, result.stderr
        trains = [line for line in result.stdout.splitlines() if "promptworth train " in line]
        splits = [line for line in result.stdout.splitlines() if "promptworth split " in line]
        assert trains
        if name == "kshot":
            assert all("--test-limit 300 " in line for line in trains)
        else:
            assert not any("--test-limit" in line for line in trains)
            assert splits and all("--test-limit 300 " in line for line in splits)


def test_the_plan_counts_finished_runs(tmp_path):
    """A record that exists is a finished run, one the study trains again (stale) is not (the
    estimate of the rest: tests/test_estimate.py)."""
    from promptworth.study.planning import plan_summary

    study = load_study(copy.deepcopy(BASE), SCHEMA)
    files = [tmp_path / f"run{i}.json" for i in range(6)]
    for path in files[:3]:
        path.write_text("{not json")  # an unreadable record still counts as finished (reuse makes it stale)
    assert "6 runs: 3 finished, 3 to train" in plan_summary(study, files)
    assert "6 runs: 2 finished, 4 to train" in plan_summary(study, files, stale={str(files[0])})


def test_a_study_prints_its_plan_when_it_starts_not_in_a_dry_run(tmp_path):
    args = ("--configfile", str(REPO / "config" / "studies" / "tiny.yaml"), "--config", f"results_dir={tmp_path}/tiny")
    dry = snakemake("-n", *args, "--", "prepare")
    assert dry.returncode == 0 and "[promptworth] plan:" not in dry.stdout + dry.stderr
    real = snakemake(*args, "--", "prepare")
    assert real.returncode == 0, real.stderr
    assert "[promptworth] plan: 2 task(s) (SST-2, CB), 2 method(s)" in real.stderr
    assert "[promptworth] 16 runs: 0 finished, 16 to train" in real.stderr


@pytest.mark.slow
def test_adding_runs_to_a_study_leaves_its_finished_records_alone(tiny_study, tmp_path):
    """`make publish` resumes with Snakemake's params trigger, which compares each job's params with
    those recorded when it ran: no param of a training run may depend on the rest of the study
    (e.g. the number of runs), or adding a method or seed would retrain every finished run. The
    shared tiny study, copied with Snakemake's memory of its jobs, gets a second data seed."""
    study = tiny_study.copy(tmp_path / "study", memory=True)
    config = yaml.safe_load(tiny_study.configfile.read_text())
    config["splits"]["data_seeds"] = [1, 2]
    second = study / "second.yaml"
    second.write_text(yaml.safe_dump(config), encoding="utf-8")
    result = snakemake("-n", "--configfile", str(second), "--rerun-triggers", "params", "--", "runs", cwd=study)
    assert result.returncode == 0, result.stderr[-3000:]
    assert job_counts(result.stdout)["train"] == 3, result.stdout[-3000:]  # data seed 2's runs only
    assert "Params have changed" not in result.stdout


def _schema_defaults(node, where="schema"):
    """Every `default` the schema states, as the paths where it states one."""
    found = []
    if isinstance(node, dict):
        found += [where] if "default" in node else []
        for key, value in node.items():
            found += _schema_defaults(value, f"{where}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _schema_defaults(value, f"{where}[{i}]")
    return found


def test_a_key_left_out_takes_its_one_default_and_the_schema_states_none():
    assert _schema_defaults(yaml.safe_load(SCHEMA.read_text())) == []
    config = copy.deepcopy(BASE)
    for key in ("results_dir", "comparisons", "templates", "data_dir"):
        config.pop(key, None)
    for key in ("dev_policy", "k", "test_limit"):
        config["splits"].pop(key, None)
    study = load_study(config, SCHEMA)
    study_defaults = {f.name: f.default for f in dataclasses.fields(StudyConfig)}
    assert study.results_dir == study_defaults["results_dir"] == "results"
    assert study.comparisons == study_defaults["comparisons"] == (("prompt", "head"),)
    assert study.data_dir is None and study.templates == {}
    assert (study.splits.dev_policy, study.splits.k, study.splits.test_limit) == (DEFAULT_DEV_POLICY, DEFAULT_K, None)
    assert {f.name: f.default for f in dataclasses.fields(SplitsConfig)}["k"] == DEFAULT_K
    # and a key a config does give wins
    config["results_dir"], config["splits"]["test_limit"] = "elsewhere", 7
    study = load_study(config, SCHEMA)
    assert (study.results_dir, study.splits.test_limit) == ("elsewhere", 7)


def test_the_schema_s_training_choices_are_the_training_settings_choices():
    """Each training key with choices (protocol, schedule, precision, engine, ...) lists in the schema
    what TrainConfig accepts: a choice added to one is added to the other."""
    from promptworth.training.settings import TrainConfig

    training = yaml.safe_load(SCHEMA.read_text())["$defs"]["training"]["properties"]
    choices = {f.name: list(f.metadata["choices"]) for f in dataclasses.fields(TrainConfig) if "choices" in f.metadata}
    assert "engine" in choices and choices["engine"][-1] == "v5"
    assert {key: training[key]["enum"] for key in choices if "enum" in training.get(key, {})} == \
        {key: value for key, value in choices.items() if "enum" in training.get(key, {})}
    assert {"protocol", "schedule", "precision", "engine"} <= {key for key in choices if "enum" in training.get(key, {})}


# ---------------------------------------------------------------------------------------------
# Several models in one study

TINY = yaml.safe_load((REPO / "config" / "studies" / "tiny.yaml").read_text())
LLAMA, GPT2 = "resources/models/tiny-llama", "resources/models/tiny-gpt2"


def two_models(**changes) -> dict:
    """The tiny study on two tiny models, one data seed: tiny-gpt2 on SST-2 only, with more memory."""
    config = copy.deepcopy(TINY)
    config["splits"]["data_seeds"] = [1]
    config.update(model=[LLAMA, GPT2], by_model={GPT2: {"tasks": ["SST-2"], "resources": {"mem_mb": 1500}}},
                  results_dir="results")
    return {**config, **changes}


def test_a_study_of_two_models_plans_each_models_runs_in_a_folder_of_its_own(tmp_path):
    config = two_models()
    runs = plan(load_study(config, SCHEMA))
    assert [r.model for r in runs] == ["tiny-llama"] * 8 + ["tiny-gpt2"] * 4  # model by model, in the config's order
    assert {(r.task, r.method, r.size) for r in runs if r.model == "tiny-gpt2"} == {
        ("SST-2", method, size) for method in ("prompt", "head") for size in (8, 16)}
    # the first model alone: the same runs, in the same order
    assert plan(load_study({**config, "model": LLAMA, "by_model": {}}, SCHEMA)) == runs[:8]
    restricted = plan(load_study(two_models(by_model={GPT2: {"methods": ["head"]}}), SCHEMA))
    assert {(r.task, r.method) for r in restricted if r.model == "tiny-gpt2"} == {("SST-2", "head"), ("CB", "head")}
    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump(config))
    result = snakemake("-n", "-p", "--configfile", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    counts = job_counts(result.stdout)
    # the models share the splits: 2 tasks x 2 sizes x 1 data seed
    assert (counts["train"], counts["tiny_model"], counts["split"]) == (12, 2, 4)
    trains = [job for job in result.stdout.split("\nrule ") if job.startswith("train:")]
    assert len(trains) == 12
    for job in trains:
        gpt2 = "--model resources/models/tiny-gpt2 " in job
        assert gpt2 == ("--out results/runs/tiny-gpt2/SST-2/" in job) == ("wildcards: model=tiny-gpt2," in job)
        assert ("mem_mb=1500" if gpt2 else "mem_mb=1000") in job and "--threads 1 " in job
        assert re.search(r"--split-dir results/splits/(SST-2|CB)/\d+-1 ", job)


def test_a_model_on_fewer_data_seeds_and_a_task_with_a_second_train_seed_plan_just_those_runs():
    # the third edition's shape: the second model on 1 of the study's 2 data seeds, SST-2 with 2 train seeds
    config = two_models(by_model={GPT2: {"tasks": ["SST-2"], "data_seeds": [2]}}, train_seeds_by_task={"SST-2": [1, 2]})
    config["splits"]["data_seeds"] = [1, 2]
    runs = plan(load_study(config, SCHEMA))
    seeds: dict[tuple[str, str], set[tuple[int, int]]] = {}
    for run in runs:
        seeds.setdefault((run.model, run.task), set()).add((run.data_seed, run.train_seed))
    assert seeds == {("tiny-llama", "SST-2"): {(1, 1), (1, 2), (2, 1), (2, 2)},
                     ("tiny-llama", "CB"): {(1, 1), (2, 1)},
                     ("tiny-gpt2", "SST-2"): {(2, 1), (2, 2)}}
    # every method at every size on each seed it runs: 2 methods x 2 sizes per (data seed, train seed)
    assert len(runs) == 4 * 4 + 2 * 4 + 2 * 4
    # a method that keeps the first train seed where its task has two
    one = plan(load_study({**config, "by_method": {"head": {"train_seeds": [1]}}}, SCHEMA))
    assert {(r.method, r.train_seed) for r in one if r.task == "SST-2"} == {("prompt", 1), ("prompt", 2), ("head", 1)}
    # a model that keeps the first train seed where the task has two
    first = plan(load_study({**config, "by_model": {GPT2: {"tasks": ["SST-2"], "data_seeds": [2], "train_seeds": [1]}}},
                            SCHEMA))
    assert {(r.data_seed, r.train_seed) for r in first if r.model == "tiny-gpt2"} == {(2, 1)}
    with pytest.raises(PromptworthError, match=r"config: by_method.head.train_seeds names train seed 3, which the study "
                                               r"does not train with"):
        load_study({**config, "by_method": {"head": {"train_seeds": [3]}}}, SCHEMA)


M2 = re.escape(GPT2)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"by_model": {"nope": {"tasks": ["SST-2"]}}}, r"config: by_model names model 'nope', which is not in model"),
        ({"by_model": {GPT2: {"tasks": ["RTE"]}}}, rf"config: by_model.{M2}.tasks names task 'RTE', which is not in tasks"),
        ({"by_model": {GPT2: {"methods": ["null"]}}},
         rf"config: by_model.{M2}.methods names method 'null', which the study does not run"),
        ({"by_model": {GPT2: {"threads": 2}}}, rf"config.by_model.{M2}: Additional properties are not allowed"),
        ({"by_model": {GPT2: {"resources": {"mem_mb": 0}}}},
         rf"config.by_model.{M2}.resources.mem_mb: 0 is less than or equal to the minimum of 0"),
        ({"by_model": {GPT2: {"tasks": []}}}, rf"config.by_model.{M2}.tasks: \[\] should be non-empty"),
        ({"by_model": {GPT2: {"data_seeds": [7]}}}, rf"config: by_model.{M2} leaves model '{M2}' no runs"),
        ({"by_model": {GPT2: {"data_seeds": [-1]}}}, rf"config: by_model.{M2}.data_seeds item -1: a seed"),
        ({"train_seeds_by_task": {"RTE": [2]}}, r"config: train_seeds_by_task names task 'RTE', which is not in tasks"),
        ({"train_seeds_by_task": {"CB": []}}, r"config.train_seeds_by_task.CB: \[\] should be non-empty"),
        ({"model": [LLAMA, LLAMA]}, r"config.model: .*has non-unique elements"),
        ({"model": []}, r"config.model: .*should be non-empty"),
        ({"model": [LLAMA, "./elsewhere/tiny-llama"], "by_model": {}},
         r"config: model names 'resources/models/tiny-llama' and './elsewhere/tiny-llama', whose runs would share "
         r"the folder 'tiny-llama'"),
        ({"by_model": {LLAMA: {"tasks": ["SST-2"]}, GPT2: {"tasks": ["SST-2"]}}},
         r"config: by_model leaves task 'CB' to no model"),
        # a label is a folder name, never a path (before: records landed outside runs/, or in runs/ itself)
        ({"model": [LLAMA, "resources/models/sub/.."], "by_model": {}},
         r"config: model 'resources/models/sub/\.\.' would name its runs' folder '\.\.': a model's label"),
        ({"model": "/", "by_model": {}}, r"config: model '/' would name its runs' folder '': a model's label"),
        ({"model": ".", "by_model": {}}, r"config: model '\.' would name its runs' folder ''"),
        ({"model": "./models/.hidden", "by_model": {}}, r"config: model '\./models/\.hidden' would name its runs' "
                                                         r"folder '\.hidden'"),
        ({"by_model": {LLAMA: {"methods": ["prompt"]}, GPT2: {"methods": ["prompt"]}}},
         r"config: comparison prompt:head: method 'head' is run on no task"),
        ({"by_model": {GPT2: {"tasks": ["CB"], "methods": ["prompt"]}}, "methods_by_task": {"CB": ["head"]}},
         rf"config: by_model.{M2} leaves model '{M2}' no runs"),
    ],
)
def test_a_bad_model_or_by_model_is_one_clear_error(change, message):
    with pytest.raises(PromptworthError, match=message):
        load_study(two_models(**change), SCHEMA)


@pytest.mark.slow
def test_a_two_model_study_runs_through_and_its_analysis_is_per_model(tmp_path):
    config = two_models()
    config["splits"]["sizes"] = [8]  # 6 runs: 2 tasks x 2 methods, and tiny-gpt2's 2 on SST-2
    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump(config))
    done = snakemake("--configfile", str(path), cwd=tmp_path, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    results = tmp_path / "results"
    table = pd.read_csv(results / "runs.csv", keep_default_na=False)
    assert table.groupby("model").size().to_dict() == {"tiny-gpt2": 2, "tiny-llama": 4}
    assert len(list((results / "runs" / "tiny-gpt2").rglob("*.json"))) == 2
    advantage = json.loads((results / "advantage" / "prompt-vs-head.json").read_text())
    assert [(r["model"], r["task"]) for r in advantage] == [("tiny-llama", "CB"), ("tiny-llama", "SST-2"),
                                                           ("tiny-gpt2", "SST-2")]
    from promptworth.analysis.table_format import parse_markdown

    _, rows = parse_markdown((results / "tables" / "advantage.md").read_text())
    assert [row[1] for row in rows] == ["tiny-llama", "tiny-gpt2"]
    costs = pd.read_csv(results / "tables" / "costs.csv")
    assert sorted(set(costs["model"])) == ["tiny-gpt2", "tiny-llama"]
    # scale: the advantage per model; cost: the score against training FLOPs (protocol.md beside it)
    figures = {"SST-2.png", "CB.png", "overview.png", "methods.png", "scale.png", "cost.png"}
    assert (results / "tables" / "protocol.md").is_file()
    assert {p.name for p in (results / "figures").glob("*.png")} == figures


# ---------------------------------------------------------------------------------------------
# A config never runs code

YTE_CONFIG = """__use_yte__: true
?if __import__("pathlib").Path("PWNED").touch() is None:
  tasks: [SST-2]
"""


def test_a_yte_config_is_refused_before_snakemake_reads_it(tmp_path, monkeypatch, capsys):
    """Snakemake reads a config that starts with __use_yte__ through YTE, which runs the Python in
    its keys (before: `snakemake -n` ran it and the config then passed the schema). Every `make`
    target reads the config first (promptworth unlock-stale, promptworth pool): it is refused there,
    before any Snakemake; a bare Snakemake, which has run it by then, stops at the Snakefile."""
    evil = tmp_path / "evil.yaml"
    evil.write_text(yaml.safe_dump(BASE) + YTE_CONFIG, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--cores", "1", "-n",
               "--configfile", str(evil)]
    for verb in (["unlock-stale"], ["pool", "--size", "1", "--"]):
        assert main([*verb, *command]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"promptworth: error: config file {evil}: it asks for YTE templating (__use_yte__), "
                              "which runs the Python written in the file") and len(err.splitlines()) == 1, err
        assert not (tmp_path / "PWNED").exists()
    # the other spellings of the option, and a second config file
    assert main(["unlock-stale", "snakemake", f"--configfile={evil}"]) == 2
    assert main(["unlock-stale", "snakemake", "--configfiles", str(REPO / "config" / "studies" / "tiny.yaml"), str(evil)]) == 2
    capsys.readouterr()
    bare = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert bare.returncode != 0 and "it asks for YTE templating" in bare.stderr
    assert "Job stats" not in bare.stdout


def test_read_config_file_reads_plain_yaml_only(tmp_path):
    from promptworth.study.config_file import read_config_file, snakemake_configfiles

    plain = tmp_path / "plain.yaml"
    plain.write_text("tasks: [SST-2]\nnote: '?if 1: x'\n", encoding="utf-8")
    assert read_config_file(plain) == {"tasks": ["SST-2"], "note": "?if 1: x"}
    for text, message in (("- a\n- b\n", "a study config is a mapping of keys"), ("a: [\n", "not valid YAML"),
                          ("a: !!python/object/apply:os.system ['true']\n", "not valid YAML")):
        plain.write_text(text, encoding="utf-8")
        with pytest.raises(PromptworthError, match=message):
            read_config_file(plain)
    assert snakemake_configfiles(["snakemake", "-n", "--configfile", "a.yaml", "b.yaml", "--cores", "1",
                                  "--configfile=c.yaml", "--configfiles", "d.yaml"]) == ["a.yaml", "b.yaml", "c.yaml",
                                                                                        "d.yaml"]

