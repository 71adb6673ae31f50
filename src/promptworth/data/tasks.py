"""The task registry and the readers that turn a task's files into rows.

A task is one entry of data in ``registry.yaml`` (files, field mapping, labels, metric, templates,
label words). Every task's rows have the same shape: ``idx`` (position in its source file),
``text_a``, optionally ``text_b`` and further task fields (``choice1``, ``answer``, ...), and
``label``: the index of the raw label in ``TaskSpec.labels``, or a float for regression tasks.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Iterator

import datasets
import yaml

from promptworth.data.sources import task_file
from promptworth.errors import PromptworthError

SPLIT_FILES = ("pool", "eval")
METRICS = ("acc", "f1", "macro_f1", "mcc", "pearson")


@dataclass(frozen=True)
class TaskSpec:
    """One registry entry. See the header of ``registry.yaml`` for what each field means."""

    name: str
    family: str
    dir: str
    format: str
    fields: dict[str, Any]
    metric: str
    pool: str | None = None
    eval: str | None = None
    header: bool = False
    extra_eval: tuple[str, ...] = ()
    kshot_dir: str | None = None
    fewshot: dict[str, str] = field(default_factory=dict)
    reader: str = "plain"
    labels: tuple[str, ...] | None = None
    regression_threshold: float | None = None
    rows: dict[str, int] = field(default_factory=dict)
    templates: dict[str, str] = field(default_factory=dict)
    label_words: dict[str, Any] = field(default_factory=dict)
    null_words: dict[str, Any] = field(default_factory=dict)

    @property
    def is_regression(self) -> bool:
        return self.labels is None

    @property
    def num_labels(self) -> int:
        """Number of classes; regression tasks are read as two classes (LM-BFF's recipe)."""
        return 2 if self.labels is None else len(self.labels)

    @property
    def text_fields(self) -> tuple[str, ...]:
        return tuple(name for name in self.fields if name != "label")

    def file_name(self, split: str) -> str:
        """The file holding ``split`` ('pool' or 'eval'); a clear error when the task has none."""
        if split not in SPLIT_FILES:
            raise PromptworthError(f"unknown split {split!r} for {self.name}: expected one of {SPLIT_FILES}")
        name = self.pool if split == "pool" else self.eval
        if name is None:
            raise PromptworthError(f"task {self.name} has no {split} file")
        return name

    def label_index(self, raw: Any) -> int | float:
        """Map a raw label value (as read from the file) to the row's label."""
        if self.labels is None:
            try:
                value = float(raw)
            except (TypeError, ValueError):
                value = math.nan
            if not math.isfinite(value):
                raise PromptworthError(f"{self.name}: label {raw!r} is not a finite number")
            return value
        key = _label_key(raw)
        try:
            return self.labels.index(key)
        except ValueError:
            raise PromptworthError(
                f"{self.name}: label {key!r} is not one of the task's labels {list(self.labels)}"
            ) from None


def _label_key(raw: Any) -> str:
    """Raw labels are compared as strings: 1 -> '1', True -> 'True'."""
    return str(raw).strip()


@functools.cache
def registry() -> dict[str, TaskSpec]:
    """All tasks, by name, in registry order (the registry is immutable package data)."""
    text = resources.files(__package__).joinpath("registry.yaml").read_text(encoding="utf-8")
    entries = yaml.safe_load(text)
    specs = {}
    for name, entry in entries.items():
        entry = dict(entry)
        for key in ("labels", "extra_eval"):
            if entry.get(key) is not None:
                entry[key] = tuple(str(value) for value in entry[key])
        for key in ("label_words", "null_words"):
            if key in entry:
                entry[key] = {str(label): words for label, words in entry[key].items()}
        spec = TaskSpec(name=name, **entry)
        if spec.metric not in METRICS:
            raise ValueError(f"registry: {name} has unknown metric {spec.metric!r}")
        specs[name] = spec
    return specs


def get_task(name: str) -> TaskSpec:
    """The registry entry for ``name``; a clear error listing the known tasks otherwise."""
    tasks = registry()
    if name not in tasks:
        raise PromptworthError(f"unknown task {name!r}; known tasks: {', '.join(tasks)}")
    return tasks[name]


# ---------------------------------------------------------------------------------------------
# Reading files


def read_records(task: TaskSpec, path: Path) -> list[Any]:
    """Raw records of one file: lists of columns (tsv/csv, header dropped) or dicts (jsonl)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PromptworthError(f"{path}: not valid UTF-8 (byte {exc.start})") from None
    if task.format == "tsv":
        lines = text.splitlines()
        if task.header:
            lines = lines[1:]
        return [line.split("\t") for line in lines if line.strip()]
    if task.format == "csv":
        try:
            records = list(csv.reader(io.StringIO(text)))
        except csv.Error as exc:
            raise PromptworthError(f"{path}: not a readable CSV ({exc})") from None
        if task.header:
            records = records[1:]
        return records
    if task.format == "jsonl":
        records = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise PromptworthError(f"{path}: line {number} is not valid JSON ({exc.msg})") from None
        return records
    raise ValueError(f"registry: {task.name} has unknown format {task.format!r}")


def _lookup(record: Any, where: Any, task: TaskSpec, path: Path) -> Any:
    """One field of a raw record: a column index (tsv/csv) or a dotted key path (jsonl)."""
    try:
        if isinstance(where, int):
            return record[where]
        value = record
        for key in str(where).split("."):
            value = value[key]
        return value
    except (IndexError, KeyError, TypeError):
        raise PromptworthError(f"{path}: a record of {task.name} has no field {where!r}: {str(record)[:120]}") from None


def _multirc_records(records: list[dict]) -> Iterator[dict]:
    """MultiRC: one row per (passage, question, answer) triple."""
    for passage in records:
        for question in passage["passage"]["questions"]:
            for answer in question["answers"]:
                yield {
                    "passage": passage["passage"]["text"],
                    "question": question["question"],
                    "question_id": f"{passage['idx']}-{question['idx']}",
                    "answer": answer["text"],
                    "label": answer["label"],
                }


def rows_from_records(task: TaskSpec, records: list[Any], path: Path) -> list[dict[str, Any]]:
    """Normalised rows (see the module docstring) from raw records."""
    if task.reader == "multirc":
        records = list(_multirc_records(records))
    elif task.reader != "plain":
        raise ValueError(f"registry: {task.name} has unknown reader {task.reader!r}")
    rows = []
    for idx, record in enumerate(records):
        row: dict[str, Any] = {"idx": idx}
        for name, where in task.fields.items():
            value = _lookup(record, where, task, path)
            try:
                row[name] = task.label_index(value) if name == "label" else value
            except PromptworthError as exc:
                raise PromptworthError(f"{path}: record {idx + 1}: {exc}") from None
        rows.append(row)
    return rows


def load_rows(task: TaskSpec, split: str, data_dir: Path | None = None) -> list[dict[str, Any]]:
    """Rows of the task's training pool ('pool') or labelled evaluation set ('eval')."""
    path = task_file(task, task.file_name(split), data_dir)
    return rows_from_records(task, read_records(task, path), path)


def load(task_name: str, split: str, data_dir: Path | None = None) -> datasets.Dataset:
    """A task's pool or evaluation set as a ``datasets.Dataset``."""
    task = get_task(task_name)
    return to_dataset(task, load_rows(task, split, data_dir))


def to_dataset(task: TaskSpec, rows: list[dict[str, Any]]) -> datasets.Dataset:
    """Rows as a ``datasets.Dataset`` with the task's label names attached as a ClassLabel."""
    features = {"idx": datasets.Value("int64")}
    for name in task.text_fields:
        features[name] = datasets.Value("int64") if name.endswith("_index") else datasets.Value("string")
    if task.is_regression:
        features["label"] = datasets.Value("float64")
    else:
        features["label"] = datasets.ClassLabel(names=list(task.labels))
    columns = {name: [row[name] for row in rows] for name in features}
    return datasets.Dataset.from_dict(columns, features=datasets.Features(features))
