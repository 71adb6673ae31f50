"""No config value can run code: every value that reaches a rule's shell command is quoted.

The free-text keys of a study config (``data_dir``, ``results_dir``, ``runs_dir``, ``model``,
``task_files``) are set to names full of shell metacharacters. The dry run's commands must keep each
one whole, and a real run of the workflow must work with them and execute none of the commands
hidden inside.
"""

from __future__ import annotations

import copy
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from tiny_models import sentiment_rows, tiny_model

REPO = Path(__file__).resolve().parents[1]

# A folder name that runs three commands if it ever reaches a shell unquoted (each would create a
# file named PWNED<n> in the working directory), and breaks the command line at its space.
HOSTILE = "x $(touch PWNED1) `touch PWNED2`;touch PWNED3 & 'q\" y"

# The smallest study that runs every rule: one task, one size, one data seed, prompt vs head.
STUDY = {
    "model": "tiny",
    "tasks": ["SST-2"],
    "methods": ["prompt", "head"],
    "train_seeds": [1],
    "splits": {"kind": "ladder", "sizes": [8], "data_seeds": [1], "dev_policy": "fixed", "dev_size": 8,
               "test_limit": 16},
    "training": {"protocol": "steps", "max_steps": 2, "eval_every": 1, "learning_rate": 1.0e-3,
                 "batch_size": 4, "max_length": 64, "precision": "fp32"},
    "resources": {"threads": 1},
    "comparisons": ["prompt:head"],
}


def snakemake(cwd: Path, configfile: Path, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--cores", "2",
               "--configfile", str(configfile), *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=900)


def hostile_study(tmp_path: Path, key: str) -> tuple[Path, dict]:
    """A study folder and config whose ``key`` names a folder called HOSTILE (made real, so that
    the study can run); the other keys keep safe values."""
    config = copy.deepcopy(STUDY)
    model = tmp_path / "models" / "tiny-llama"
    shutil.copytree(tiny_model("llama"), model)
    config["model"] = str(model)
    config["results_dir"] = "results"
    if key == "data_dir":
        mirror = Path(os.environ["PROMPTWORTH_DATA"]).resolve()  # set by conftest
        (tmp_path / HOSTILE).symlink_to(mirror, target_is_directory=True)
        config["data_dir"] = HOSTILE
    elif key == "results_dir":
        config["results_dir"] = f"{HOSTILE}/results"
    elif key == "model":  # in the model's path (its folder's own name is its label, a plain name)
        hostile_model = tmp_path / "models" / HOSTILE / "tiny-llama"
        hostile_model.parent.mkdir()
        model.rename(hostile_model)
        config["model"] = str(hostile_model)
    elif key == "task_files":  # a task of its own, its task file and data in a folder so named
        write_own_task(tmp_path / HOSTILE)
        config.update(task_files=[f"{HOSTILE}/tasks.yaml"], tasks=["reviews"])
    elif key == "runs_dir":
        config["runs_dir"] = f"{HOSTILE}/runs"
        config["splits"]["sizes"] = [8, 16]
        write_records(tmp_path / HOSTILE / "runs" / "tiny-llama" / "SST-2")
    else:
        raise ValueError(key)
    configfile = tmp_path / "study.yaml"
    configfile.write_text(yaml.safe_dump(config), encoding="utf-8")
    return configfile, config


def write_own_task(folder: Path) -> None:
    """A task file of one task, ``reviews``: toy sentiment rows in two CSV files beside it."""
    folder.mkdir()
    for name, seed, n in (("train.csv", 1, 24), ("test.csv", 2, 16)):
        lines = [f"{row['text_a']},{row['label']}" for row in sentiment_rows(n, seed)]
        (folder / name).write_text("\n".join(["text,label", *lines]) + "\n", encoding="utf-8")
    entry = {"format": "csv", "header": True, "pool": "train.csv", "eval": "test.csv",
             "fields": {"text_a": "text", "label": "label"}, "labels": ["0", "1"], "metric": "acc",
             "templates": {"plain": "{text_a} It was {mask}."}, "label_words": {"0": "bad", "1": "good"}}
    (folder / "tasks.yaml").write_text(yaml.safe_dump({"reviews": entry}), encoding="utf-8")


def write_records(folder: Path) -> None:
    """Run records of prompt and head at two sizes (what aggregate, tables and figures read), in
    the study's layout (``<model>/<task>/<method>/<size>-<data seed>-<train seed>.json``)."""
    for method, scores in (("prompt", (0.7, 0.8)), ("head", (0.5, 0.6))):
        for size, score in zip((8, 16), scores):
            record = {
                "schema_version": 2, "task": "SST-2", "method": method, "model": "tiny-llama",
                "template_name": None if method == "head" else "lmbff", "train_size": size, "data_seed": 1,
                "train_seed": 1, "metric": "acc", "score": score, "dev_score": score, "best_step": 2,
                "test": {"acc": score}, "timing": {"wall_s": 1.0},
            }
            path = folder / method / f"{size}-1-1.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(record), encoding="utf-8")


def shell_commands(dry_run_output: str) -> list[str]:
    return [line.split("Shell command:", 1)[1].strip() for line in dry_run_output.splitlines()
            if line.startswith("Shell command:")]


def json_strings(word: str) -> list[str]:
    """The strings inside a word that is a JSON object (none for any other word)."""
    try:
        value = json.loads(word)
    except ValueError:
        return []
    found, todo = [], [value]
    while todo:
        item = todo.pop()
        if isinstance(item, str):
            found.append(item)
        elif isinstance(item, dict):
            todo.extend(item.values())
        elif isinstance(item, list):
            todo.extend(item)
    return found


KEYS = ("data_dir", "results_dir", "model", "runs_dir", "task_files")


@pytest.mark.parametrize("key", KEYS)
def test_each_config_value_reaches_the_shell_as_one_word(tmp_path, key):
    configfile, config = hostile_study(tmp_path, key)
    result = snakemake(tmp_path, configfile, "-n", "--printshellcmds", "--forceall")
    assert result.returncode == 0, result.stderr
    commands = shell_commands(result.stdout)
    assert commands
    carrying = [c for c in commands if "PWNED1" in c]
    assert carrying, f"no command names the {key}"
    for command in carrying:
        words = shlex.split(command)  # the words the shell will see (after its quote removal)
        # the whole name survives inside one word (as itself, or inside the study config that
        # aggregate gets as JSON), and none of its pieces became a word of its own
        assert any(HOSTILE in text for word in words for text in [word, *json_strings(word)]), command
        assert not {"$(touch", "`touch", "y"} & set(words), command


@pytest.mark.slow
@pytest.mark.parametrize("key", KEYS)
def test_a_hostile_config_value_runs_the_study_and_executes_nothing(tmp_path, key):
    configfile, config = hostile_study(tmp_path, key)
    result = snakemake(tmp_path, configfile)
    assert result.returncode == 0, result.stderr[-3000:]
    assert not list(tmp_path.rglob("PWNED*")), "a command hidden in a config value ran"
    results = tmp_path / config["results_dir"]
    assert (results / "runs.csv").is_file() and (results / "figures" / "overview.png").is_file()
    if key != "runs_dir":
        label = Path(config["model"]).name
        records = sorted((results / "runs" / label / config["tasks"][0]).rglob("*.json"))
        assert [p.parent.name for p in records] == ["head", "prompt"]


def test_reordered_training_keys_give_the_same_commands(tmp_path):
    """A study whose training section lists the same settings in another order retrains nothing:
    Snakemake compares the train rule's parameters as text."""
    configfile, config = hostile_study(tmp_path, "results_dir")
    first = snakemake(tmp_path, configfile, "-n", "--printshellcmds")
    config["training"] = dict(reversed(list(config["training"].items())))
    reordered = tmp_path / "reordered.yaml"
    reordered.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    second = snakemake(tmp_path, reordered, "-n", "--printshellcmds")
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    train = [c for c in shell_commands(first.stdout) if c.startswith("promptworth train")]
    assert len(train) == 2
    assert sorted(train) == sorted(c for c in shell_commands(second.stdout) if c.startswith("promptworth train"))
