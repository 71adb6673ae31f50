"""A study with the third edition's extra rows (tests/edition3_rows.yaml): what changes for one
method (``by_method``: its sizes, data seeds and dev policy), true few-shot selection beside the
fixed dev set in one study, and the dry run of its workflow."""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

from promptworth.errors import PromptworthError
from promptworth.study import tiny_variant as fast
from promptworth.study.load import load_study
from promptworth.study.planning import pilots, plan
from promptworth.study.reuse import asked, difference

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
CONFIG = yaml.safe_load((REPO / "tests" / "edition3_rows.yaml").read_text(encoding="utf-8"))
TFS = "results/rows/splits-fixed_subset"


def _study(**changes):
    config = copy.deepcopy(CONFIG)
    for key, value in changes.items():
        if key == "by_method":
            config["by_method"] = {**config["by_method"], **value}
        elif value is None:
            del config[key]
        else:
            config[key] = value
    return load_study(config, SCHEMA)


def test_each_row_runs_at_its_own_sizes_and_seeds():
    runs = plan(_study())
    found = Counter((run.task, run.method, run.size) for run in runs)
    sst2 = {
        # size 0: the prompt and the controls (data seed 1), zero-shot calibrated; not the trained-only rows
        ("prompt", 0): 2, ("prompt-irrelevant", 0): 1, ("prompt-misleading", 0): 1, ("zeroshot-calibrated", 0): 2,
        **{(method, size): 2 for size in (8, 16) for method in ("prompt", "head", "icl-calibrated", "prompt-tfs",
                                                               "head-tfs")},
        **{(method, size): 1 for size in (8, 16) for method in ("null", "prompt-irrelevant", "prompt-misleading")},
    }
    trec = {("prompt", 0): 2, ("zeroshot-calibrated", 0): 2,
            **{(method, size): 2 for size in (8, 16) for method in ("prompt", "head", "icl-calibrated", "prompt-tfs",
                                                                   "head-tfs")}}
    expected = {**{("SST-2", *key): n for key, n in sst2.items()}, **{("trec", *key): n for key, n in trec.items()}}
    assert dict(found) == expected and len(runs) == 56
    assert {run.data_seed for run in runs if run.method == "prompt-misleading"} == {1}


def test_a_method_with_its_own_dev_policy_has_split_folders_of_its_own():
    study = _study()
    folders = {(run.method, study.split_folder(run.task, run.size, run.data_seed, run.method)) for run in plan(study)}
    assert ("prompt-tfs", f"{TFS}/SST-2/8-1") in folders and ("head-tfs", f"{TFS}/trec/16-2") in folders
    assert ("prompt", "results/rows/splits/SST-2/8-1") in folders
    # every other method keeps the study's folders, the paths its records have always had
    assert all(folder.startswith("results/rows/splits/") for method, folder in folders if not method.endswith("-tfs"))
    assert study.split_folder("SST-2", 8, 1) == study.split_folder("SST-2", 8, 1, "prompt") == "results/rows/splits/SST-2/8-1"
    assert study.dev_policy_for("prompt-tfs") == "fixed_subset" and study.dev_policy_for("prompt") == "fixed"


def test_true_few_shot_chooses_its_learning_rate_on_its_own_splits():
    study = _study()
    pilot = next(p for p in pilots(study) if (p.task, p.method) == ("SST-2", "prompt-tfs"))
    assert asked(study, pilot).split_folder == Path(f"{TFS}/SST-2/8-1")
    run = next(r for r in plan(study) if (r.task, r.method, r.size) == ("trec", "head-tfs", 16))
    assert asked(study, run).split_folder == Path(f"{TFS}/trec/16-1")
    assert study.lr_file(run.model, run.task, run.method, run.size).endswith("/lr/tiny-llama/trec/head-tfs.json")


def _record_of(values: dict) -> dict:
    """A record holding exactly the values a study asks for (dotted keys nested)."""
    record: dict = {}
    for key, value in values.items():
        *parents, last = key.split(".")
        node = record
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return record


def test_a_true_few_shot_record_is_reused_only_with_a_dev_set_as_large_as_its_training_set():
    """A record of prompt-tfs made before its dev policy changed (the fixed 16 rows) trains again;
    one with the dev set its policy draws is the run asked for."""
    study = _study(lr_grid=None)  # no selection file to cite
    run = next(r for r in plan(study) if (r.task, r.method, r.size, r.data_seed) == ("SST-2", "prompt-tfs", 8, 1))
    asked_for = asked(study, run)
    record = _record_of(asked_for.values)
    assert record["dev_size"] == 8 and difference(study, asked_for, record, missing_is_stale=False) is None
    assert difference(study, asked_for, {**record, "dev_size": 16}, missing_is_stale=False) == (
        "dev_size is 16 in the record, the study asks for 8")
    prompt = next(r for r in plan(study) if (r.task, r.method, r.size, r.data_seed) == ("SST-2", "prompt", 8, 1))
    assert "dev_size" not in asked(study, prompt).values  # the study's own policy: records of every age read as before


@pytest.mark.parametrize("changes, message", [
    ({"by_method": {"prompt-lora": {"sizes": [8]}}}, "config: by_method.prompt-lora: the study does not run method"),
    ({"by_method": {"prompt-tfs": {"sizes": [12]}}}, "config: by_method.prompt-tfs.sizes names size 12, which the study"),
    ({"by_method": {"null": {"data_seeds": [3]}}}, "config: by_method.null.data_seeds names data seed 3, which the study"),
    ({"by_method": {"icl-calibrated": {"sizes": [0]}}}, "config: by_method.icl-calibrated leaves method 'icl-calibrated' no runs"),
    ({"by_method": {"prompt-tfs": {"dev_policy": "same_as_train"}}},
     "config: by_method.prompt-tfs.dev_policy: dev policy 'same_as_train' draws as many dev rows as training rows: size "
     "0 would have no dev set; use dev policy 'fixed' with size 0 \\(set by_method.prompt-tfs.sizes\\)"),
    ({"by_method": {"prompt-tfs": {"sizes": [8], "dev_policy": "subset"}}}, "config.by_method.prompt-tfs.dev_policy: 'subset' is not one of"),
    ({"splits": {**CONFIG["splits"], "dev_size": 8}},
     "config: by_method.prompt-tfs: splits of SST-2: training size 16 under dev policy 'fixed_subset' needs as many dev rows"),
    ({"lr_grid": {**CONFIG["lr_grid"], "size": 16}, "by_method": {"prompt-tfs": {"sizes": [8], "dev_policy": "fixed_subset"}}},
     "config: lr_grid: method prompt-tfs selects on a dev set as large as its training set \\(dev policy fixed_subset\\), "
     "but its pilot runs on SST-2 train on 16 examples, more than any of its runs \\(8\\)"),
])
def test_by_method_is_checked_in_one_line(changes, message):
    with pytest.raises(PromptworthError, match=message):
        _study(**changes)


def test_a_kshot_study_keeps_lmbffs_dev_sets():
    config = {key: value for key, value in CONFIG.items() if key not in ("methods_by_task", "lr_grid", "training_by_method")}
    config.update(splits={"kind": "kshot", "data_seeds": [13]}, tasks=["SST-2"], comparisons=["prompt:head"],
                  methods=["prompt", "head", {"name": "prompt-tfs", "objective": "prompt"}],
                  by_method={"prompt-tfs": {"dev_policy": "fixed_subset"}})
    with pytest.raises(PromptworthError, match="config: by_method.prompt-tfs.dev_policy: a dev policy is a ladder's"):
        load_study(config, SCHEMA)


def test_the_tiny_variant_keeps_every_row(monkeypatch):
    monkeypatch.setenv(fast.ENV, "1")
    study = load_study(fast.study_config(CONFIG), SCHEMA)
    methods = {run.method for run in plan(study)}
    assert {"prompt-tfs", "head-tfs", "icl-calibrated", "zeroshot-calibrated", "prompt-misleading"} <= methods
    # its kept sizes (0 and 8); one data seed, so no data seeds of a method's own ("null" had only those)
    assert study.by_method["prompt-tfs"].sizes == (8,) and "null" not in study.by_method


def test_the_dry_run_lists_the_rows_jobs_and_their_split_folders(tmp_path):
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--cores", "1", "-n", "-p",
               "--configfile", str(REPO / "tests" / "edition3_rows.yaml")]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    table = result.stdout.split("Job stats:")[1]
    counts = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.MULTILINE)}
    # splits: 2 tasks x 3 sizes x 2 seeds under the study's policy; the true few-shot rows' 2 x 2 x 2
    # under theirs. Pilots: 2 tasks x 4 methods x 2 rates at size 8 on data seed 1; a selection each
    assert {rule: counts[rule] for rule in ("split", "split_by_policy", "train", "lr_grid_train", "select_lr",
                                            "advantage")} == {"split": 12, "split_by_policy": 8, "train": 56,
                                                              "lr_grid_train": 16, "select_lr": 8, "advantage": 8}
    # the tables of what its records keep: runs row by row, the protocol, the score against training FLOPs
    assert counts["paired"] == counts["protocol"] == counts["cost"] == 1
    assert "--in-place-of tiny-llama" in result.stdout  # the first model: a method of its own backbone stands in for it
    outputs = set(re.findall(r"output: (\S+/manifest\.json)", result.stdout))
    assert {f"{TFS}/{task}/{size}-{seed}/manifest.json" for task in ("SST-2", "trec") for size in (8, 16)
            for seed in (1, 2)} <= outputs
    assert "results/rows/splits/SST-2/0-1/manifest.json" in outputs
    commands = re.sub(" +", " ", result.stdout)  # an empty parameter (no data_dir, no task_files) leaves a space
    assert ("promptworth split --task SST-2 --sizes 8 --data-seed 1 --dev-policy fixed_subset --dev-size 16 "
            f"--test-limit 24 --out-dir {TFS}/SST-2 ") in commands
    assert ("promptworth split --task SST-2 --sizes 8 --data-seed 1 --dev-policy fixed --dev-size 16 "
            "--test-limit 24 --out-dir results/rows/splits/SST-2 ") in commands
    train = re.search(r"promptworth train --task trec --method prompt-tfs --split-dir (\S+) .*--seed 1 --data-seed 2 ",
                      commands)
    assert train is not None and train.group(1) in (f"{TFS}/trec/8-2", f"{TFS}/trec/16-2")
