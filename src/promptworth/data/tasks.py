"""The task registry and the readers that turn a task's files into rows.

A task is one entry of data in ``registry.yaml`` (files, field mapping, labels, metric, templates,
label words). Every task's rows have the same shape: ``idx`` (position in its source file),
``text_a``, optionally ``text_b`` and further task fields (``choice1``, ``answer``, ...), and
``label``: the index of the raw label in ``TaskSpec.labels``, or a float for regression tasks.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

import yaml

from promptworth.errors import PromptworthError

SPLIT_FILES = ("pool", "eval")
METRICS = ("acc", "f1", "macro_f1", "mcc", "pearson")


@dataclass(frozen=True)
class TaskSource:
    """Where a task of a task file (:mod:`promptworth.data.task_files`) reads its rows: files
    beside the task file (``pool`` and ``eval`` name them), or a ``datasets`` dataset (``pool``
    and ``eval`` name its splits): a hub id at a revision, or a folder written by ``save_to_disk``."""

    task_file: Path  # as given (relative to the working folder, or absolute)
    sha256: dict[str, str] = field(default_factory=dict)  # a local file (as pool/eval name it) -> its sha256
    hub: str | None = None
    revision: str | None = None
    config: str | None = None  # the hub dataset's configuration (its `name`)
    saved: Path | None = None

    @property
    def folder(self) -> Path:
        """The task file's folder: relative paths of the task are read from here."""
        return self.task_file.parent


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
    control_templates: dict[str, str] = field(default_factory=dict)
    misleading_words: dict[str, Any] = field(default_factory=dict)
    # a task of a task file: where its rows come from (None: a built-in task, from the data mirror)
    source: TaskSource | None = None

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


def spec_from_entry(name: str, entry: Mapping[str, Any], where: str, **extra: Any) -> TaskSpec:
    """One registry entry as a :class:`TaskSpec` (labels and label-word keys as text, as files
    hold them); ``where`` names the entry in an error."""
    entry = dict(entry)
    for key in ("labels", "extra_eval"):
        if entry.get(key) is not None:
            entry[key] = tuple(str(value) for value in entry[key])
    for key in ("label_words", "null_words", "misleading_words"):
        if key in entry:
            entry[key] = {str(label): words for label, words in entry[key].items()}
    spec = TaskSpec(name=name, **entry, **extra)
    if spec.metric not in METRICS:
        raise PromptworthError(f"{where}: unknown metric {spec.metric!r}; expected one of {', '.join(METRICS)}")
    if set(spec.templates) & set(spec.control_templates):
        raise PromptworthError(f"{where}: names a template and a control template alike")
    return spec


@functools.cache
def registry() -> dict[str, TaskSpec]:
    """All built-in tasks, by name, in registry order (the registry is immutable package data)."""
    text = resources.files(__package__).joinpath("registry.yaml").read_text(encoding="utf-8")
    return {name: spec_from_entry(name, entry, f"registry: {name}") for name, entry in yaml.safe_load(text).items()}


def get_task(name: str, defined: Mapping[str, TaskSpec] | None = None) -> TaskSpec:
    """The built-in task ``name``, or the one of ``defined`` (the tasks of a study's or a command's
    task files: :func:`promptworth.data.task_files.load_task_files`); a clear error listing the
    known tasks otherwise."""
    tasks = {**registry(), **(defined or {})}
    if name not in tasks:
        raise PromptworthError(f"unknown task {name!r}; known tasks: {', '.join(tasks)}")
    return tasks[name]


def as_task(task: str | TaskSpec) -> TaskSpec:
    """``task`` itself, or the built-in task of that name (a task file's task is passed as its spec)."""
    return task if isinstance(task, TaskSpec) else get_task(task)


# ---------------------------------------------------------------------------------------------
# Reading files
