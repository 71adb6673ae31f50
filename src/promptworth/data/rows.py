"""A task's original files -> normalised rows (one dict per example), and rows -> a dataset.

A built-in task's files come from the data mirror (:mod:`promptworth.data.sources`); a task of a
task file reads its own (:mod:`promptworth.data.task_files`): CSV, TSV or JSONL as the built-in
ones are read, Parquet, or a ``datasets`` dataset.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import datasets

from promptworth.data import task_files
from promptworth.data.sources import task_file
from promptworth.data.tasks import SPLIT_FILES, TaskSpec, as_task
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


def _lookup(record: Any, where: Any, task: TaskSpec, path: Path | str) -> Any:
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


def rows_from_records(task: TaskSpec, records: list[Any], path: Path | str) -> list[dict[str, Any]]:
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
    """Rows of the task's training pool ('pool') or labelled evaluation set ('eval'): a built-in
    task's from the data mirror, a task file's from its own source (``data_dir`` unused)."""
    if task.source is not None:
        return _own_rows(task, split)
    path = task_file(task, task.file_name(split), data_dir)
    return rows_from_records(task, read_records(task, path), path)


def source_files(task: TaskSpec, data_dir: Path | None = None) -> dict[str, Path]:
    """The files a task's rows are read from, by the name a split manifest's ``sources`` gives them."""
    if task.source is not None:
        return task_files.source_files(task)
    return {f"{task.dir}/{task.file_name(s)}": task_file(task, task.file_name(s), data_dir) for s in SPLIT_FILES}


# ---------------------------------------------------------------------------------------------
# The rows of a task file's task


def _own_rows(task: TaskSpec, split: str) -> list[dict[str, Any]]:
    """Rows of a task-file task: read from its source, each text field text, the row count the task
    file gives (if it gives one)."""
    where, records = _own_records(task, split)
    if not records:
        raise PromptworthError(f"{where}: no rows (task {task.name}, its {split})")
    if task.format in task_files.TABULAR:
        task, records = _by_position(task, records, where)
    rows = rows_from_records(task, records, where)
    for row in rows:
        for name in task.text_fields:
            wanted = int if name.endswith("_index") else str
            if not isinstance(row[name], wanted) or isinstance(row[name], bool):
                raise PromptworthError(f"{where}: record {row['idx'] + 1}: field {name!r} is {row[name]!r}, not "
                                       f"{'an integer' if wanted is int else 'text'}")
    expected = task.rows.get(split)
    if expected is not None and len(rows) != expected:
        raise PromptworthError(f"{where}: {len(rows)} rows, but task file {task.source.task_file} says "  # type: ignore[union-attr]
                               f"rows.{split}: {expected}")
    return rows


def _own_records(task: TaskSpec, split: str) -> tuple[Path | str, list[Any]]:
    """Where the records of ``split`` come from (for errors) and the raw records."""
    source = task.source
    assert source is not None
    name = task.file_name(split)
    if source.hub is not None:
        where = f"{source.hub}@{source.revision}, split {name}"
        try:
            data = datasets.load_dataset(source.hub, name=source.config, revision=source.revision, split=name)
        except (OSError, ValueError) as exc:
            raise PromptworthError(f"{where} (task file {source.task_file}): cannot load it ({exc})") from None
        return where, data.to_list()
    if source.saved is not None:
        return source.saved, _saved_records(source.saved, name)
    path = task_files.source_path(task, split)
    if task.format == "parquet":
        return path, _parquet_records(path)
    # the header is read here, to find the columns that fields name
    return path, read_records(replace(task, header=False) if task.header else task, path)


def _saved_records(folder: Path, split: str) -> list[dict[str, Any]]:
    try:
        saved = datasets.load_from_disk(str(folder))
    except (OSError, ValueError) as exc:
        raise PromptworthError(f"{folder}: not a dataset saved with save_to_disk ({exc})") from None
    if not isinstance(saved, datasets.DatasetDict):
        raise PromptworthError(f"{folder}: holds one dataset, not its splits: save a DatasetDict (e.g. "
                               "{'train': ..., 'test': ...}) and name its splits in pool and eval")
    if split not in saved:
        raise PromptworthError(f"{folder}: has no split {split!r}; its splits: {', '.join(saved)}")
    return saved[split].to_list()


def _parquet_records(path: Path) -> list[dict[str, Any]]:
    import pyarrow
    import pyarrow.parquet

    try:
        return pyarrow.parquet.read_table(path).to_pylist()
    except (OSError, pyarrow.ArrowException) as exc:
        raise PromptworthError(f"{path}: not a readable Parquet file ({exc})") from None


def _by_position(task: TaskSpec, records: list[list[str]], where: Path | str) -> tuple[TaskSpec, list[list[str]]]:
    """A CSV or TSV task with the columns its fields name found in the file's header (which is
    dropped), or as it is without a header."""
    if not task.header:
        return task, records
    header, body = [column.strip() for column in records[0]], records[1:]
    fields = {}
    for name, column in task.fields.items():
        if isinstance(column, str) and column not in header:
            raise PromptworthError(f"{where}: no column {column!r} (fields.{name} of task {task.name}); its columns: "
                                   f"{', '.join(header)}")
        fields[name] = header.index(column) if isinstance(column, str) else column
    if not body:
        raise PromptworthError(f"{where}: no rows under its header (task {task.name})")
    return replace(task, fields=fields), body


def load(task: str | TaskSpec, split: str, data_dir: Path | None = None) -> datasets.Dataset:
    """A task's pool or evaluation set as a ``datasets.Dataset`` (a built-in task by its name, a task
    file's by its spec: ``task_files.find_task``)."""
    task = as_task(task)
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
