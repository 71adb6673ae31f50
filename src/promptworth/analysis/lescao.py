"""Le Scao & Rush's (NAACL 2021) wandb exports as a tidy results table.

The authors' ``exported_results/<task>/wandb_export.csv`` (TevenLeScao/pet) hold one column per
model, seed and metric; here they become the tidy columns the data advantage reads, so their runs
and ours go through the same code (``docs/analysis.md``: their Table 1 reproduced).
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from promptworth.analysis.results import check_number_column, first_line
from promptworth.errors import PromptworthError

_RUN_COLUMN = re.compile(r"^(?P<model>.+?) seed (?P<seed>\d+) - (?P<key>.+)$")
_CLF = re.compile(r"^CLF (?P<backbone>\S+)$")
_PVP = re.compile(r"^PVP (?P<pattern>\d+) (?P<backbone>\S+)(?P<null> neutral verbalizer)?$")
_SIZE_COLUMN = "training_points"
# pet's metric names (scored over all patterns: "-all-p") as the registry names them
_METRICS = {"acc-all-p": "acc", "f1-macro-all-p": "macro_f1"}


def _metric(name: str) -> str:
    return _METRICS.get(name, name)


def _lescao_method(model: str, pattern: int, column: str, source: str) -> tuple[str, str, str] | None:
    """(method, backbone, template name) of a wandb model name; None for other patterns."""
    if match := _CLF.match(model):
        return "head", match["backbone"], ""
    if match := _PVP.match(model):
        if int(match["pattern"]) != pattern:
            return None
        method = "null" if match["null"] else "prompt"
        return method, match["backbone"], f"pattern-{pattern}"
    raise PromptworthError(f"{source}: column {column!r}: unknown model {model!r} (expected 'CLF <model>' or 'PVP <p> <model>[ neutral verbalizer]')")


def _task_from_stem(stem: str) -> str:
    """A registry task name matching the file stem case-insensitively, else the stem itself."""
    from promptworth.data.tasks import registry  # the registry pulls in `datasets`: import late

    names = {name.lower(): name for name in registry()}
    return names.get(stem.lower(), stem)


def import_lescao(path: Path, task: str | None = None, pattern: int = 0) -> pd.DataFrame:
    """Le Scao & Rush's ``wandb_export.csv`` as a tidy table.

    Columns: task, method, model, template_name, train_size, seed, metric, score. ``CLF <model>``
    is ``head``, ``PVP <pattern> <model>`` is ``prompt`` and ``PVP <pattern> <model> neutral
    verbalizer`` is ``null``; other patterns, ``_step`` and the ``__MIN``/``__MAX`` columns are
    ignored; empty cells are dropped (no run); text or an infinite number in a score or
    ``training_points`` cell is an error naming the line and column. pet's metric names become the
    registry's (``acc-all-p``: ``acc``, ``f1-macro-all-p``: ``macro_f1``; others stay as they are).
    """
    path = Path(path)
    source = str(path)
    if not path.is_file():
        raise PromptworthError(f"{source}: no such file")
    if pattern < 0:
        raise PromptworthError(f"--pattern must be a PVP pattern number (0, 1, ...), got {pattern}")
    try:
        frame = pd.read_csv(path)
    except OSError as exc:
        raise PromptworthError(f"{source}: cannot read ({exc.strerror or exc})") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise PromptworthError(f"{source}: not a readable CSV ({first_line(exc)})") from None
    if _SIZE_COLUMN not in frame.columns:
        raise PromptworthError(f"{source}: no {_SIZE_COLUMN!r} column; not a Le Scao & Rush wandb export")
    sizes = check_number_column(frame[_SIZE_COLUMN], _SIZE_COLUMN, source, required=True)
    for row, size in enumerate(sizes):
        if size < 0 or size != int(size):
            raise PromptworthError(f"{source}: line {row + 2}, column {_SIZE_COLUMN!r}: {size:g} is not a number of points")
    task = task or _task_from_stem(path.stem)
    records = []
    metrics: set[str] = set()
    patterns: set[int] = set()
    for column in frame.columns:
        match = _RUN_COLUMN.match(column)
        if not match or match["key"].endswith(("__MIN", "__MAX")) or not match["key"].startswith("test-"):
            continue
        if pvp := _PVP.match(match["model"]):
            patterns.add(int(pvp["pattern"]))
        mapped = _lescao_method(match["model"], pattern, column, source)
        if mapped is None:
            continue
        method, backbone, template_name = mapped
        metric = _metric(match["key"].removeprefix("test-"))
        metrics.add(metric)
        scores = check_number_column(frame[column], column, source)  # empty: no run; text or inf: an error
        for size, score in zip(sizes, scores):
            if pd.notna(score):
                records.append((task, method, backbone, template_name, int(size), match["seed"], metric, float(score)))
    if patterns and pattern not in patterns:
        raise PromptworthError(
            f"{source}: no runs of pattern {pattern} (patterns here: {', '.join(map(str, sorted(patterns)))})"
        )
    if len(metrics) > 1:
        raise PromptworthError(f"{source}: several test metrics ({', '.join(sorted(metrics))}); expected one")
    if not records:
        raise PromptworthError(f"{source}: no scores of 'CLF' or pattern {pattern} runs")
    columns = ["task", "method", "model", "template_name", "train_size", "seed", "metric", "score"]
    tidy = pd.DataFrame.from_records(records, columns=columns)
    return tidy.sort_values(["method", "train_size", "seed"], kind="stable").reset_index(drop=True)
