"""A task's original files -> normalised rows (one dict per example), and rows -> a dataset."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import datasets

from promptworth.data.sources import task_file
from promptworth.data.tasks import TaskSpec, get_task
from promptworth.errors import PromptworthError


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


def rows_sha256(rows: Sequence[Mapping[str, Any]]) -> str:
    """The sha256 of ``rows`` in their order, one canonical JSON line each (sorted keys, no spaces,
    UTF-8): two runs whose test rows give the same value scored the same rows (fields and labels)
    in the same order."""
    digest = hashlib.sha256()
    for row in rows:
        line = json.dumps(row, sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        digest.update(line.encode("utf-8") + b"\n")
    return digest.hexdigest()
