"""Tasks of one's own (promptworth.data.task_files, docs/own-task.md): task files read from CSV,
TSV, JSONL, Parquet and saved ``datasets`` folders, their errors, splits, training runs and the
workflow on them."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from tiny_models import sentiment_rows, tiny_model

from promptworth.cli import main
from promptworth.data import rows, split_folder, splits, task_files
from promptworth.errors import PromptworthError
from promptworth.files import sha256_file
from promptworth.study import tiny_variant as fast
from promptworth.study.load import load_study
from promptworth.study.planning import plan

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
LABELS = ["negative", "positive"]
ENTRY = {
    "format": "csv", "header": True, "pool": "train.csv", "eval": "test.csv",
    "fields": {"text_a": "text", "label": "label"}, "labels": LABELS, "metric": "acc",
    "templates": {"plain": "{text_a} It was {mask}."}, "label_words": {"negative": "bad", "positive": "good"},
}


def records(n: int, seed: int) -> list[dict[str, str]]:
    """Toy reviews (the tiny models' vocabulary) with their raw labels."""
    return [{"text": row["text_a"], "label": LABELS[row["label"]]} for row in sentiment_rows(n, seed)]


POOL, EVALUATION = records(40, 1), records(12, 2)


def write_csv(path: Path, items: list[dict], header: bool = True, delimiter: str = ",") -> None:
    with open(path, "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, delimiter=delimiter)
        writer.writerows(([["text", "label"]] if header else []) + [[r["text"], r["label"]] for r in items])


def write_task_file(folder: Path, entries: dict, name: str = "tasks.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(entries, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def csv_task(tmp_path: Path) -> Path:
    """A task file of one CSV task, ``reviews``, with its two files beside it."""
    write_csv(tmp_path / "train.csv", POOL)
    write_csv(tmp_path / "test.csv", EVALUATION)
    return write_task_file(tmp_path, {"reviews": ENTRY})


def expected_rows(items: list[dict]) -> list[dict]:
    return [{"idx": i, "text_a": r["text"], "label": LABELS.index(r["label"])} for i, r in enumerate(items)]


# ---------------------------------------------------------------------------------------------
# Reading task files and their data


def test_a_csv_task_reads_its_columns_by_name(csv_task):
    spec = task_files.find_task("reviews", [csv_task])
    assert spec.family == task_files.OWN_FAMILY and spec.source.task_file == csv_task
    assert rows.load_rows(spec, "pool") == expected_rows(POOL)
    evaluation = rows.load(spec, "eval")
    assert evaluation.features["label"].names == LABELS and evaluation.num_rows == len(EVALUATION)
    with pytest.raises(PromptworthError, match="unknown task 'reviews'"):
        task_files.find_task("reviews", [])  # a task file's task is known only where it is given


def write_source(folder: Path, kind: str) -> dict:
    """The pool and eval of the toy reviews in ``kind``'s files, and the entry that reads them."""
    entry = {**ENTRY, "format": kind, "pool": f"train.{kind}", "eval": f"test.{kind}"}
    del entry["header"]
    for name, items in (("train", POOL), ("test", EVALUATION)):
        path = folder / f"{name}.{kind}"
        if kind == "jsonl":  # nested: fields name a dotted key path
            path.write_text("".join(json.dumps({"review": {"text": r["text"]}, "label": r["label"]}) + "\n"
                                    for r in items), encoding="utf-8")
        elif kind == "parquet":
            import pyarrow
            import pyarrow.parquet

            pyarrow.parquet.write_table(pyarrow.Table.from_pylist(items), path)
        elif kind == "tsv":  # no header: fields give positions
            write_csv(path, items, header=False, delimiter="\t")
    if kind == "jsonl":
        entry["fields"] = {"text_a": "review.text", "label": "label"}
    if kind == "tsv":
        entry["fields"] = {"text_a": 0, "label": -1}
    if kind == "datasets":
        import datasets

        saved = datasets.DatasetDict({"train": datasets.Dataset.from_list(POOL),
                                      "test": datasets.Dataset.from_list(EVALUATION)})
        saved.save_to_disk(str(folder / "saved"))
        entry.update(dataset={"saved": "saved"}, pool="train", eval="test")
    return entry


@pytest.mark.parametrize("kind", ["tsv", "jsonl", "parquet", "datasets"])
def test_every_source_gives_the_rows_a_csv_file_gives(tmp_path, kind):
    path = write_task_file(tmp_path, {"reviews": write_source(tmp_path, kind)})
    spec = task_files.find_task("reviews", [path])
    assert rows.load_rows(spec, "pool") == expected_rows(POOL)
    assert rows.load_rows(spec, "eval") == expected_rows(EVALUATION)


def test_a_ladder_of_a_task_file_names_what_it_read(csv_task, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = task_files.find_task("reviews", [csv_task])
    folders = splits.ladder(spec, splits.LadderSpec(sizes=(0, 8), data_seed=1, dev_size=8), tmp_path / "splits")
    manifest = json.loads((folders[8] / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["task"] == "reviews" and "dataset" not in manifest
    assert manifest["sources"] == {name: sha256_file(tmp_path / name) for name in ("tasks.yaml", "train.csv", "test.csv")}
    parts = split_folder.load_split(spec, folders[8])
    assert [parts[p].num_rows for p in ("train", "dev", "test")] == [8, 8, len(EVALUATION)]
    with pytest.raises(PromptworthError, match="unknown task 'reviews'"):
        split_folder.load_split("reviews", folders[8])


def test_a_saved_dataset_names_its_files_in_the_manifest(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write_task_file(tmp_path, {"reviews": write_source(tmp_path, "datasets")})
    spec = task_files.find_task("reviews", [path])
    sources = rows.source_files(spec)
    assert list(sources)[0] == "tasks.yaml" and any(name.startswith("saved/") and name.endswith(".arrow")
                                                     for name in sources)


def test_the_sha256_a_task_file_gives_is_checked(tmp_path):
    write_csv(tmp_path / "train.csv", POOL)
    write_csv(tmp_path / "test.csv", EVALUATION)
    digest = sha256_file(tmp_path / "train.csv")
    path = write_task_file(tmp_path, {"reviews": {**ENTRY, "sha256": {"train.csv": digest.upper()}}})
    spec = task_files.find_task("reviews", [path])
    assert rows.load_rows(spec, "pool") == expected_rows(POOL)
    write_csv(tmp_path / "train.csv", POOL[:-1])
    with pytest.raises(PromptworthError, match=r"train.csv has changed: its sha256 is not the one task file .*tasks.yaml"):
        rows.load_rows(spec, "pool")


def entry_with(**changes) -> dict:
    entry = {**ENTRY, **changes}
    return {key: value for key, value in entry.items() if value is not None}


# each: the task file's entries (or its text), what must be in the one error
FILE_ERRORS = [
    ("reviews: [unclosed", "not valid YAML at line"),
    ("", "a task file maps task names to their entries (docs/own-task.md), not nothing"),
    ({"SST-2": ENTRY}, "task 'SST-2' is the name of a built-in task"),
    ({"my task": ENTRY}, "task name 'my task' must be letters, digits"),
    ({"reviews": [1, 2]}, "task reviews: an entry is a mapping of keys"),
    ({"reviews": entry_with(metric=None)}, "task reviews: the required key 'metric' is missing"),
    ({"reviews": entry_with(dir="data")}, "task reviews: unknown key 'dir'"),
    ({"reviews": entry_with(format="xlsx")}, "format 'xlsx' is not one of csv, tsv, jsonl, parquet, datasets"),
    ({"reviews": entry_with(metric="auc")}, "task reviews: unknown metric 'auc'"),
    ({"reviews": entry_with(header=None)}, "fields.text_a names the column 'text', but the file has no header"),
    ({"reviews": entry_with(fields={"text_a": "text"})}, "fields has no 'label'"),
    ({"reviews": entry_with(labels=None)}, "give labels (the raw label values, in order) or, for a regression task"),
    ({"reviews": entry_with(labels=["a", "a"])}, "labels names 'a' twice"),
    ({"reviews": entry_with(label_words={"negative": "bad", "neutral": "meh"})},
     "label_words names 'neutral', which is not one of labels"),
    ({"reviews": entry_with(label_words={"negative": "bad"})}, "label_words has no word for the label 'positive'"),
    ({"reviews": entry_with(label_words=None)}, "templates need label_words"),
    ({"reviews": entry_with(pool="absent.csv")}, "its pool file"),
    ({"reviews": entry_with(eval="train.csv")}, "pool and eval are both 'train.csv'"),
    ({"reviews": entry_with(sha256={"train.csv": "abc"})}, "sha256.train.csv is not a sha256"),
    ({"reviews": entry_with(sha256={"other.csv": "0" * 64})}, "sha256 names 'other.csv', which is neither"),
    ({"reviews": entry_with(rows={"pool": -1})}, "rows gives the row counts of pool and eval"),
    ({"reviews": entry_with(format="datasets", dataset={"hub": "someone/reviews"}, header=None, pool="train",
                            eval="test")}, "dataset.hub 'someone/reviews' needs its revision"),
    ({"reviews": entry_with(format="datasets", dataset={"saved": "nowhere"}, header=None)},
     "nowhere is not a folder (one written by save_to_disk)"),
    ({"reviews": entry_with(dataset={"saved": "nowhere"})}, "dataset is for format datasets"),
]


@pytest.mark.parametrize("content, message", FILE_ERRORS)
def test_a_malformed_task_file_is_one_error_naming_it(tmp_path, content, message):
    write_csv(tmp_path / "train.csv", POOL)
    write_csv(tmp_path / "test.csv", EVALUATION)
    path = tmp_path / "tasks.yaml"
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content, sort_keys=False), encoding="utf-8")
    with pytest.raises(PromptworthError, match=f"^{re.escape(f'task file {path}: ')}.*{re.escape(message)}") as caught:
        task_files.load_task_files([path])
    assert "\n" not in str(caught.value)


def test_a_task_defined_twice_or_a_task_file_missing_is_one_error(csv_task, tmp_path):
    again = write_task_file(tmp_path, {"reviews": ENTRY}, "again.yaml")
    with pytest.raises(PromptworthError, match=f"task file {again}: task 'reviews' is defined in {csv_task} too"):
        task_files.load_task_files([csv_task, again])
    with pytest.raises(PromptworthError, match=f"task file {tmp_path / 'absent.yaml'}: cannot read it"):
        task_files.load_task_files([tmp_path / "absent.yaml"])


# each: the pool file's text, what must be in the one error (after the file's path)
DATA_ERRORS = [
    ("", "no rows"),
    ("text,label\n", "no rows under its header"),
    ("review,label\nfine,positive\n", "no column 'text' (fields.text_a of task reviews); its columns: review, label"),
    ("text,label\nfine,positive\nmeh,neutral\n", "record 2: reviews: label 'neutral' is not one of the task's labels"),
    ("text,label\nfine\n", "a record of reviews has no field 1"),
    (b"text,label\n\xff,positive\n", "not valid UTF-8"),
]


@pytest.mark.parametrize("text, message", DATA_ERRORS)
def test_a_data_file_that_does_not_fit_its_task_is_one_error_naming_it(csv_task, text, message):
    pool = csv_task.parent / "train.csv"
    pool.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    spec = task_files.find_task("reviews", [csv_task])
    with pytest.raises(PromptworthError, match=f"^{re.escape(str(pool))}: .*{re.escape(message)}"):
        rows.load_rows(spec, "pool")


def test_rows_and_texts_are_checked(tmp_path):
    path = write_task_file(tmp_path, {"reviews": {**write_source(tmp_path, "parquet"), "rows": {"pool": 41}}})
    spec = task_files.find_task("reviews", [path])
    with pytest.raises(PromptworthError, match=r"train.parquet: 40 rows, but task file .* says rows.pool: 41"):
        rows.load_rows(spec, "pool")
    import pyarrow
    import pyarrow.parquet

    pyarrow.parquet.write_table(pyarrow.Table.from_pylist([{"text": 7, "label": "negative"}]), tmp_path / "test.parquet")
    with pytest.raises(PromptworthError, match=r"test.parquet: record 1: field 'text_a' is 7, not text"):
        rows.load_rows(spec, "eval")
    (tmp_path / "test.parquet").write_text("not parquet", encoding="utf-8")
    with pytest.raises(PromptworthError, match=r"test.parquet: not a readable Parquet file"):
        rows.load_rows(spec, "eval")


def test_a_saved_dataset_must_hold_the_splits_it_names(tmp_path):
    import datasets

    entry = write_source(tmp_path, "datasets")
    path = write_task_file(tmp_path, {"reviews": {**entry, "eval": "validation"}})
    spec = task_files.find_task("reviews", [path])
    with pytest.raises(PromptworthError, match="saved: has no split 'validation'; its splits: train, test"):
        rows.load_rows(spec, "eval")
    datasets.Dataset.from_list(POOL).save_to_disk(str(tmp_path / "one"))
    path = write_task_file(tmp_path, {"reviews": {**entry, "dataset": {"saved": "one"}}})
    with pytest.raises(PromptworthError, match="one: holds one dataset, not its splits"):
        rows.load_rows(task_files.find_task("reviews", [path]), "pool")


# ---------------------------------------------------------------------------------------------
# Commands


def test_split_tasks_and_train_take_task_files(csv_task, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["tasks", "--task-files", str(csv_task)]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[-1].split() == ["reviews", "own", "acc", "2", "yes", "yes"]
    assert main(["split", "--task", "reviews", "--task-files", str(csv_task), "--sizes", "8", "--data-seed", "1",
                 "--dev-size", "8", "--out-dir", "splits"]) == 0
    out = tmp_path / "run.json"
    argv = ["train", "--task", "reviews", "--task-files", str(csv_task), "--method", "prompt", "--split-dir",
            "splits/8-1", "--model", str(tiny_model("llama")), "--seed", "1", "--out", str(out), "--max-steps", "2",
            "--eval-every", "1", "--no-progress", "--precision", "fp32"]
    assert main(argv) == 0
    record = json.loads(out.read_text(encoding="utf-8"))
    assert (record["task"], record["template_name"], record["train_size"]) == ("reviews", "plain", 8)
    capsys.readouterr()
    argv[argv.index("--task-files") + 1] = str(tmp_path / "absent.yaml")
    assert main(argv) == 2
    assert capsys.readouterr().err.strip() == f"promptworth: error: task file {tmp_path / 'absent.yaml'}: cannot read it " \
                                              "(No such file or directory)"


def test_a_request_carries_its_task_files_to_a_worker():
    from promptworth.training.request import RunRequest

    request = RunRequest(task="reviews", method="head", split_dir=Path("splits/8-1"), model="tiny", seed=1,
                         task_files=(Path("my-task/tasks.yaml"),))
    sent = json.loads(json.dumps(request.to_json()))
    assert sent["task_files"] == ["my-task/tasks.yaml"]
    assert RunRequest.from_json(sent).task_files == (Path("my-task/tasks.yaml"),)


# ---------------------------------------------------------------------------------------------
# Studies


def study_config(task_file: Path, **changes) -> dict:
    return {
        "task_files": [str(task_file)], "results_dir": "results", "model": str(tiny_model("llama")),
        "tasks": ["reviews"], "methods": ["prompt", "head"], "train_seeds": [1],
        "splits": {"kind": "ladder", "sizes": [0, 8, 16], "data_seeds": [1], "dev_policy": "fixed", "dev_size": 8},
        "training": {"protocol": "steps", "max_steps": 2, "eval_every": 1, "learning_rate": 1.0e-3, "batch_size": 4,
                     "max_length": 64, "precision": "fp32"},
        "resources": {"threads": 1}, "comparisons": ["prompt:head"], **changes,
    }


def test_a_study_of_a_task_file_and_its_tiny_variant(csv_task, monkeypatch):
    study = load_study(study_config(csv_task), SCHEMA)
    assert list(study.defined_tasks) == ["reviews"]
    assert {(run.method, run.size) for run in plan(study)} == {("prompt", 0), ("prompt", 8), ("prompt", 16),
                                                               ("head", 8), ("head", 16)}
    monkeypatch.setenv(fast.ENV, "1")
    tiny = load_study(fast.study_config(study_config(csv_task)), SCHEMA)
    assert tiny.defined_tasks == study.defined_tasks and len(plan(tiny)) == 3


@pytest.mark.parametrize("changes, message", [
    ({"task_files": []}, "unknown task 'reviews'"),
    ({"task_files": ["absent.yaml"]}, "config: task_files: task file absent.yaml: cannot read it"),
    ({"splits": {"kind": "ladder", "sizes": [40], "data_seeds": [1], "dev_policy": "fixed", "dev_size": 8}},
     "config: splits of reviews: training size 40 exceeds the pool"),
    ({"splits": {"kind": "kshot", "data_seeds": [13]}}, "reviews is not an LM-BFF task"),
])
def test_a_study_of_a_task_file_is_checked(csv_task, changes, message):
    with pytest.raises(PromptworthError, match=message):
        load_study(study_config(csv_task, **changes), SCHEMA)


@pytest.mark.parametrize("template, message", [
    ("{text_a} It was.", "template '{text_a} It was.' must have exactly one answer slot {mask}"),
    ("{text_a} {text_b} It was {mask}.", "template plain names the field 'text_b', which its fields do not map"),
])
def test_a_task_file_template_that_cannot_work_stops_the_study(tmp_path, template, message):
    write_csv(tmp_path / "train.csv", POOL)
    write_csv(tmp_path / "test.csv", EVALUATION)
    path = write_task_file(tmp_path, {"reviews": {**ENTRY, "templates": {"plain": template}}})
    with pytest.raises(PromptworthError, match=re.escape(f"config: task reviews (task file {path}): {message}")):
        load_study(study_config(path), SCHEMA)


def snakemake(cwd: Path, configfile: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--cores", "2",
               "--configfile", str(configfile), *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600, env=env or os.environ.copy())


@pytest.mark.slow
def test_the_workflow_passes_the_task_file_and_draws_a_split_again_when_its_data_change(tmp_path):
    (tmp_path / "my-task").mkdir()
    write_csv(tmp_path / "my-task" / "train.csv", POOL)
    write_csv(tmp_path / "my-task" / "test.csv", EVALUATION)
    write_task_file(tmp_path / "my-task", {"reviews": ENTRY})
    configfile = tmp_path / "study.yaml"
    configfile.write_text(yaml.safe_dump(study_config(Path("my-task/tasks.yaml"))), encoding="utf-8")
    dry = snakemake(tmp_path, configfile, "-n", "--printshellcmds")
    assert dry.returncode == 0, dry.stderr[-3000:]
    commands = [line.split("Shell command:", 1)[1].strip() for line in dry.stdout.splitlines()
                if line.startswith("Shell command:")]
    readers = [c for c in commands if c.startswith(("promptworth split", "promptworth train"))]
    assert len(readers) == 3 + 5 and all("--task-files my-task/tasks.yaml" in c for c in readers), commands
    manifest = "results/splits/reviews/8-1/manifest.json"
    done = snakemake(tmp_path, configfile, "--", manifest)
    assert done.returncode == 0, done.stderr[-3000:]
    assert snakemake(tmp_path, configfile, "-n", "--", manifest).stdout.count("rule split") == 0
    time.sleep(1)
    write_csv(tmp_path / "my-task" / "train.csv", POOL[:-1])  # newer than the split: it is drawn again
    again = snakemake(tmp_path, configfile, "-n", "--", manifest)
    assert again.returncode == 0 and again.stdout.count("rule split") == 1, again.stdout
