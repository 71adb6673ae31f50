"""Task files: tasks defined outside the package, in the registry's format (``registry.yaml``),
whose rows come from files beside the task file (CSV, TSV, JSONL, Parquet) or from a ``datasets``
dataset (a hub id at a revision, or a folder written by ``save_to_disk``).

A study names its task files in the config key ``task_files``, a command with ``--task-files``.
Their tasks join the built-in ones for that study or command only: :func:`load_task_files` returns
them and every lookup is handed them (``get_task(name, defined)``), nothing is kept globally. This
module checks a file's shape (each problem one error naming the file, the task and the key);
:func:`promptworth.data.rows.load_rows` reads the rows. The user's guide: docs/own-task.md.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from promptworth.data.tasks import SPLIT_FILES, TaskSource, TaskSpec, get_task, registry, spec_from_entry
from promptworth.errors import PromptworthError
from promptworth.files import sha256_file
from promptworth.paths import study_relative

FORMATS = ("csv", "tsv", "jsonl", "parquet", "datasets")
TABULAR = ("csv", "tsv")  # records are rows of columns: a field names a column or gives its position
# an entry's keys: those of registry.yaml that a task file may set, and its own (sha256, dataset)
REQUIRED = ("format", "pool", "eval", "fields", "metric")
OPTIONAL = ("header", "labels", "regression_threshold", "rows", "templates", "label_words", "null_words",
            "control_templates", "misleading_words", "sha256", "dataset")
WORD_KEYS = ("label_words", "null_words", "misleading_words")
TEMPLATE_KEYS = ("templates", "control_templates")
DATASET_KEYS = ("hub", "revision", "config", "saved")
# a task's name names its folders (<results>/splits/<task>/...): a name, never a path
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
SHA256 = re.compile(r"[0-9a-f]{64}")
# the family of every task of a task file (the built-in ones: lmbff, superglue)
OWN_FAMILY = "own"


def load_task_files(paths: Sequence[str | Path]) -> dict[str, TaskSpec]:
    """The tasks of the task files ``paths``, by name, in their order; each name is its own task's
    (no built-in task's, none in two files)."""
    defined: dict[str, TaskSpec] = {}
    for path in paths:
        for name, spec in read_task_file(Path(path)).items():
            if name in defined:
                first = defined[name].source.task_file  # type: ignore[union-attr]
                raise PromptworthError(f"task file {path}: task {name!r} is defined in {first} too: give each task a "
                                       "name of its own")
            defined[name] = spec
    return defined


def find_task(name: str, paths: Sequence[str | Path]) -> TaskSpec:
    """The task ``name``: a built-in one or one of the task files ``paths`` (a command's ``--task-files``)."""
    return get_task(name, load_task_files(paths))


def read_task_file(path: Path) -> dict[str, TaskSpec]:
    """The tasks one task file defines, checked."""
    where = f"task file {path}"
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PromptworthError(f"{where}: cannot read it ({getattr(exc, 'strerror', None) or exc})") from None
    try:
        entries = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise PromptworthError(f"{where}: not valid YAML{at} ({getattr(exc, 'problem', None) or exc})") from None
    except RecursionError:
        raise PromptworthError(f"{where}: nested too deeply to be a task file") from None
    if not isinstance(entries, dict) or not entries:
        raise PromptworthError(f"{where}: a task file maps task names to their entries (docs/own-task.md), "
                               f"not {'nothing' if not entries else type(entries).__name__}")
    builtins = registry()
    specs = {}
    for name, entry in entries.items():
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise PromptworthError(f"{where}: task name {name!r} must be letters, digits and . _ - that start with a "
                                   "letter or digit")
        if name in builtins:
            raise PromptworthError(f"{where}: task {name!r} is the name of a built-in task (promptworth tasks): give "
                                   "yours another")
        specs[name] = _task(path, name, entry)
    return specs


def _task(path: Path, name: str, entry: Any) -> TaskSpec:
    where = f"task file {path}: task {name}"
    if not isinstance(entry, dict):
        raise PromptworthError(f"{where}: an entry is a mapping of keys ({', '.join(REQUIRED)}, labels, ...), not "
                               f"{type(entry).__name__}")
    unknown = [key for key in entry if key not in REQUIRED + OPTIONAL]
    if unknown:
        raise PromptworthError(f"{where}: unknown key {unknown[0]!r}; a task file's keys: "
                               f"{', '.join(REQUIRED + OPTIONAL)}")
    missing = [key for key in REQUIRED if key not in entry]
    if missing:
        raise PromptworthError(f"{where}: the required key {missing[0]!r} is missing")
    if entry["format"] not in FORMATS:
        raise PromptworthError(f"{where}: format {entry['format']!r} is not one of {', '.join(FORMATS)}")
    _check_fields(where, entry)
    labels = _check_labels(where, entry)
    _check_words_and_templates(where, entry, labels)
    _check_rows(where, entry.get("rows", {}))
    source = _source(path, where, entry)
    kept = {key: value for key, value in entry.items() if key not in ("sha256", "dataset")}
    return spec_from_entry(name, kept, where, family=OWN_FAMILY, dir=str(source.folder), source=source)


def _check_fields(where: str, entry: Mapping[str, Any]) -> None:
    """``fields`` maps row fields to columns: names, or for CSV/TSV positions too; a name needs a header."""
    fields, tabular = entry["fields"], entry["format"] in TABULAR
    header = entry.get("header", False)
    if "header" in entry and (not tabular or not isinstance(header, bool)):
        raise PromptworthError(f"{where}: header is true or false, for format csv or tsv only")
    if not isinstance(fields, dict) or not all(isinstance(key, str) for key in fields):
        raise PromptworthError(f"{where}: fields maps row fields (text_a, text_b, label, ...) to columns, e.g. "
                               "{text_a: text, label: label}")
    for required in ("text_a", "label"):
        if required not in fields:
            raise PromptworthError(f"{where}: fields has no {required!r}")
    for field, column in fields.items():
        position = isinstance(column, int) and not isinstance(column, bool)
        if not (position and tabular) and not (isinstance(column, str) and column):
            kinds = "a column's name or position (0 the first, -1 the last)" if tabular else "a column's name (a key)"
            raise PromptworthError(f"{where}: fields.{field} must be {kinds}, got {column!r}")
        if isinstance(column, str) and tabular and not header:
            raise PromptworthError(f"{where}: fields.{field} names the column {column!r}, but the file has no header: "
                                   "set header: true, or give the column's position")


def _check_labels(where: str, entry: Mapping[str, Any]) -> list[str] | None:
    """The raw label values as text (None: a regression task, which gives a threshold instead)."""
    labels, threshold = entry.get("labels"), entry.get("regression_threshold")
    if (labels is None) == (threshold is None):
        raise PromptworthError(f"{where}: give labels (the raw label values, in order) or, for a regression task, "
                               "regression_threshold: one of them")
    if labels is None:
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold):
            raise PromptworthError(f"{where}: regression_threshold must be a number, got {threshold!r}")
        return None
    if not isinstance(labels, list) or len(labels) < 2 or not all(isinstance(v, (str, int, bool)) for v in labels):
        raise PromptworthError(f"{where}: labels is a list of at least two label values, as the files hold them")
    texts = [str(value) for value in labels]
    twice = next((text for text in texts if texts.count(text) > 1), None)
    if twice is not None:
        raise PromptworthError(f"{where}: labels names {twice!r} twice")
    return texts


def _check_words_and_templates(where: str, entry: Mapping[str, Any], labels: list[str] | None) -> None:
    """Templates map names to text; label words map each label to a word or a list of words."""
    for key in TEMPLATE_KEYS:
        value = entry.get(key, {})
        if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            raise PromptworthError(f"{where}: {key} maps template names to templates, e.g. "
                                   '{plain: "{text_a} It was {mask}."}')
    for key in WORD_KEYS:
        value = entry.get(key, {})
        if not isinstance(value, dict):
            raise PromptworthError(f"{where}: {key} maps each label to its word, e.g. {{negative: terrible}}")
        for label, words in value.items():
            if not isinstance(words, str) and not (isinstance(words, list) and words
                                                   and all(isinstance(w, str) for w in words)):
                raise PromptworthError(f"{where}: {key}.{label} must be a word or a list of words, got {words!r}")
        named = [str(label) for label in value]
        strays = [label for label in named if labels is not None and label not in labels]
        if strays:
            raise PromptworthError(f"{where}: {key} names {strays[0]!r}, which is not one of labels {labels}")
        missing = [label for label in labels or () if value and label not in named]
        if missing:
            raise PromptworthError(f"{where}: {key} has no word for the label {missing[0]!r}")
    if entry.get("templates") and not entry.get("label_words"):
        raise PromptworthError(f"{where}: templates need label_words (a word per label), which the prompt reads")


def _check_rows(where: str, rows: Any) -> None:
    """``rows``: the row counts of the pool and the evaluation set, checked on each read."""
    if not isinstance(rows, dict) or not all(key in SPLIT_FILES and isinstance(n, int) and not isinstance(n, bool)
                                             and n > 0 for key, n in rows.items()):
        raise PromptworthError(f"{where}: rows gives the row counts of pool and eval, e.g. {{pool: 48, eval: 24}}")


def _source(path: Path, where: str, entry: Mapping[str, Any]) -> TaskSource:
    """Where the task's rows come from: its local files (which must exist), or its dataset."""
    for split in SPLIT_FILES:
        if not isinstance(entry[split], str) or not entry[split]:
            raise PromptworthError(f"{where}: {split} names a file (or a dataset's split), got {entry[split]!r}")
    if entry["pool"] == entry["eval"]:
        raise PromptworthError(f"{where}: pool and eval are both {entry['pool']!r}: the rows it evaluates on would be "
                               "rows it trains on")
    if entry["format"] == "datasets":
        if "sha256" in entry:
            raise PromptworthError(f"{where}: sha256 is for local files; a dataset is pinned by its revision or its "
                                   "saved folder")
        return _dataset_source(path, where, entry.get("dataset"))
    if "dataset" in entry:
        raise PromptworthError(f"{where}: dataset is for format datasets; this task's format is {entry['format']}")
    given = entry.get("sha256", {})
    files = [entry[split] for split in SPLIT_FILES]
    if not isinstance(given, dict):
        raise PromptworthError(f"{where}: sha256 maps a file (as pool or eval name it) to its sha256")
    for name, digest in given.items():
        if name not in files:
            raise PromptworthError(f"{where}: sha256 names {name!r}, which is neither its pool nor its eval file")
        if not isinstance(digest, str) or not SHA256.fullmatch(digest.lower()):
            raise PromptworthError(f"{where}: sha256.{name} is not a sha256 (64 hexadecimal digits): {digest!r}")
    for split in SPLIT_FILES:
        if not (path.parent / entry[split]).is_file():
            raise PromptworthError(f"{where}: its {split} file {path.parent / entry[split]} does not exist")
    return TaskSource(task_file=path, sha256={name: digest.lower() for name, digest in given.items()})


def _dataset_source(path: Path, where: str, dataset: Any) -> TaskSource:
    """A hub dataset (its id and revision, a configuration optionally) or a saved folder."""
    usage = "dataset: {hub: <id>, revision: <commit>} (config: <name> optionally) or {saved: <folder>}"
    if not isinstance(dataset, dict) or any(key not in DATASET_KEYS for key in dataset) \
            or ("hub" in dataset) == ("saved" in dataset):
        raise PromptworthError(f"{where}: format datasets reads {usage}")
    if "saved" in dataset:
        if set(dataset) != {"saved"} or not isinstance(dataset["saved"], str) or not dataset["saved"]:
            raise PromptworthError(f"{where}: format datasets reads {usage}")
        folder = path.parent / dataset["saved"]
        if not folder.is_dir():
            raise PromptworthError(f"{where}: dataset.saved {folder} is not a folder (one written by save_to_disk)")
        return TaskSource(task_file=path, saved=folder)
    for key in ("hub", "revision", "config"):
        if key in dataset and (not isinstance(dataset[key], str) or not dataset[key]):
            raise PromptworthError(f"{where}: dataset.{key} must be text, got {dataset[key]!r}")
    if "revision" not in dataset:
        raise PromptworthError(f"{where}: dataset.hub {dataset['hub']!r} needs its revision (a commit of the dataset's "
                               "repository): without one its rows could change under the study")
    return TaskSource(task_file=path, hub=dataset["hub"], revision=dataset["revision"], config=dataset.get("config"))


# ---------------------------------------------------------------------------------------------
# A task's files


def source_path(task: TaskSpec, split: str) -> Path:
    """The local file of ``split`` ('pool' or 'eval') of a task-file task, verified against the
    sha256 its task file gives (if it gives one)."""
    assert task.source is not None
    source, name = task.source, task.file_name(split)
    path = source.folder / name
    if not path.is_file():
        raise PromptworthError(f"{task.name}: its {split} file {path} (task file {source.task_file}) does not exist")
    expected = source.sha256.get(name)
    if expected is not None and sha256_file(path) != expected:
        raise PromptworthError(f"{path} has changed: its sha256 is not the one task file {source.task_file} gives for "
                               f"it (sha256.{name}); give the new file's sha256 there if the change is meant")
    return path


def source_files(task: TaskSpec) -> dict[str, Path]:
    """Every file a task-file task's rows are read from, by its path relative to the working folder
    (the names of a split manifest's ``sources``): the task file, then the pool and eval files, or
    every file of a saved dataset folder. A hub dataset's own files are named by its revision. Nothing
    is read here: :func:`source_path` verifies a file when its rows are read."""
    assert task.source is not None
    source = task.source
    files = [source.task_file]
    if source.saved is not None:
        files += sorted(path for path in source.saved.rglob("*") if path.is_file())
    elif source.hub is None:
        files += [source.folder / task.file_name(split) for split in SPLIT_FILES]
    return {study_relative(path): path for path in files}


def manifest_info(task: TaskSpec) -> dict[str, Any]:
    """What a split manifest says of a hub dataset the split was drawn from (nothing for any other
    task: its files are in the manifest's ``sources``)."""
    source = task.source
    if source is None or source.hub is None:
        return {}
    return {"dataset": {"hub": source.hub, "revision": source.revision, "config": source.config}}
