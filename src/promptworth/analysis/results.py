"""Run records (one JSON per training run) -> the tidy results table, one row per run.

The record is defined in :mod:`promptworth.training.record`; the table's columns here; both are
described in ``docs/contracts.md``.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd

from promptworth.errors import PromptworthError
from promptworth.methods.specs import builtin_methods
from promptworth.study.config import StudyConfig
from promptworth.study.record_checks import (
    check_against_study,
    check_citations,
    check_model_weights,
    check_splits,
    study_files,
)
from promptworth.study.reuse import Asked
from promptworth.training import record as records
from promptworth.training.record import read_record
from promptworth.training.settings import examples_read, selects_on_dev

BASE_COLUMNS = (
    "task", "method", "model", "template_name", "train_size", "data_seed", "train_seed", "seed",
    "metric", "score", "dev_score", "best_step", "stopped", "wall_s", "process_s", "search_s", "flops",
    "finished_at", "device", "objective", "tuning", "trainable_params", "total_params", "steps", "examples_read",
    "step_s", "peak_rss_gb",
)
# Read back as text, verbatim (pandas would read the method "null" as a missing value).
TEXT_COLUMNS = {"task", "method", "model", "template_name", "seed", "metric", "stopped", "finished_at", "device",
                "objective", "tuning"}
NA_MARKERS = ("", "nan", "NaN", "NA", "N/A", "<NA>", "None", "null")
# Columns of numbers (and every ``test_<metric>``); empty cells are missing values.
NUMBER_COLUMNS = {"train_size", "data_seed", "train_seed", "score", "dev_score", "best_step", "wall_s", "process_s",
                  "search_s", "flops", "trainable_params", "total_params", "steps", "examples_read", "step_s",
                  "peak_rss_gb"}
# ``score_at_<B>``: the test score a run records at its step budget B (the record's ``budgets``)
BUDGET_PREFIX = "score_at_"


def budget_column(steps: int) -> str:
    return f"{BUDGET_PREFIX}{steps}"


def budget_columns(columns: Iterable[str]) -> list[str]:
    """The ``score_at_<B>`` columns among ``columns``, by increasing budget."""
    found = [c for c in columns if c.startswith(BUDGET_PREFIX) and c[len(BUDGET_PREFIX):].isdigit()]
    return sorted(found, key=lambda c: int(c[len(BUDGET_PREFIX):]))


# ---------------------------------------------------------------------------------------------
# Reading records


def find_run_files(paths: Iterable[str | Path]) -> list[Path]:
    """The files given plus every ``*.json`` under the folders given (recursively), sorted, unique."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(p for p in sorted(path.rglob("*.json")) if p.is_file())
        elif path.is_file():
            found.append(path)
        else:
            raise PromptworthError(f"{path}: no such file or folder")
    unique = list(dict.fromkeys(p.resolve() for p in found))
    if not unique:
        raise PromptworthError(f"no run JSON files found in {', '.join(map(str, paths))}")
    return unique


def first_line(exc: BaseException) -> str:
    """An exception's message cut to its first line (pandas' parser errors span several)."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _number(value: Any) -> float:
    """JSON number or null -> float (NaN for null)."""
    return math.nan if value is None else float(value)


def run_seed(data_seed: Any, train_seed: Any) -> str:
    """The run's id within (task, method, train_size); ``na`` stands for an unknown data seed."""
    return f"{'na' if data_seed is None else data_seed}-{train_seed}"


def record_row(record: Mapping[str, Any]) -> dict[str, Any]:
    """The table row of one checked record."""
    row: dict[str, Any] = {
        "task": record["task"],
        "method": record["method"],
        "model": record["model"],
        "template_name": record["template_name"] or "",
        "train_size": int(record["train_size"]),
        "data_seed": record["data_seed"],
        "train_seed": int(record["train_seed"]),
        "seed": run_seed(record["data_seed"], record["train_seed"]),
        "metric": record["metric"],
        "score": _number(record["score"]),
        "dev_score": _number(record["dev_score"]),
        "best_step": record["best_step"],
        "stopped": records.stopped(record) or "",  # empty: the method takes no training step
        "wall_s": _number(record["timing"]["wall_s"]),
        "process_s": _number(record["timing"].get("process_s")),
        # the wall time of the search whose result the run applied (0: no search)
        "search_s": _number(record["search"].get("wall_s")) if record.get("search") else 0.0,
        "flops": _number(sum(record["timing"]["flops"].values())) if "flops" in record["timing"] else math.nan,
        "finished_at": record["timing"].get("finished_at") or "",
        "device": record.get("device") or "",  # what ran it (timings compare on one); empty: not recorded
        **_method_columns(record),
    }
    for name, value in record["test"].items():
        row[f"test_{name}"] = _number(value)
    for budget in record.get("budgets") or []:
        row[budget_column(budget["steps"])] = _number(budget["score"])
    return row


def method_parts(record: Mapping[str, Any]) -> Mapping[str, str]:
    """The parts of the record's method (its ``objective`` and ``tuning``; empty where unknown).
    Records from before methods had parts are of the built-in prompt, head and null: their parts
    are the registry's."""
    parts = record.get("method_parts")
    builtin = builtin_methods().get(record["method"])
    if parts is None and builtin is not None:
        parts = {"objective": builtin.objective, "tuning": builtin.tuning}
    return parts or {}


def _method_columns(record: Mapping[str, Any]) -> dict[str, Any]:
    """What trains and what a step costs (records from before methods had parts trained every
    weight: their parameter counts unknown)."""
    timing = record["timing"]
    parts = method_parts(record)
    parameters = record.get("parameters") or {}
    steps = timing.get("steps")
    batch_size = (record.get("hyperparameters") or {}).get("batch_size")
    return {
        "objective": parts.get("objective", ""),
        "tuning": parts.get("tuning", ""),
        "trainable_params": _number(parameters.get("trainable")),
        "total_params": _number(parameters.get("total")),
        "steps": _number(steps),
        # a run that stops early may never read part of its training set
        "examples_read": (_number(examples_read(int(record["train_size"]), steps, batch_size))
                          if steps is not None and batch_size else math.nan),
        "step_s": _number(timing["train_s"] / steps) if steps and timing.get("train_s") is not None else math.nan,
        "peak_rss_gb": _number(timing.get("peak_rss_gb")),
    }


def read_records(paths: Iterable[str | Path], study: StudyConfig | None = None,
                 strays: str = "warn", here: bool = True) -> dict[Path, dict[str, Any]]:
    """Every run record under ``paths``, read and checked, by file; runs whose split has changed
    since they were trained and records citing a file that changed are errors. With ``study``,
    only the study's runs are read, each must be what the study asks of it, and the other files
    (:func:`study_files`) are named in a warning, or an error (``strays`` "error"). ``here``: the
    records were trained in this folder, so the split folders and files they name by relative path
    are theirs and are checked; False for records read beside others (a published set beside its
    reproduction, whose splits now sit at those paths)."""
    paths = list(paths)
    files = find_run_files(paths)
    asked_for: dict[Path, Asked] = {}
    if study is not None:
        asked_for, others = study_files(files, study)
        if others:
            shown = ", ".join(map(str, others[:3])) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
            line = f"{len(others)} file(s) are not records of the study's runs: {shown}"
            if strays == "error":
                raise PromptworthError(f"{line} (--strays error)")
            print(f"promptworth: warning: {line}; left out", file=sys.stderr)
        if not asked_for:
            raise PromptworthError(f"none of the run records in {', '.join(map(str, paths))} is a run of the study")
        files = list(asked_for)
    records = {path: read_record(path) for path in files}
    if study is not None:
        check_against_study(records, asked_for, study)
    check_citations(records, here)
    check_model_weights(records)
    if here:
        check_splits(records)
    return records


def collect(paths: Iterable[str | Path], study: StudyConfig | None = None, strays: str = "warn",
            here: bool = True) -> pd.DataFrame:
    """The tidy table of every run record under ``paths`` (:func:`read_records`: ``study``,
    ``strays`` and ``here`` as there); a run that appears twice is an error."""
    records = read_records(paths, study, strays, here)
    rows, origin = [record_row(record) for record in records.values()], list(records)
    table = pd.DataFrame(rows)
    key = ["task", "method", "model", "template_name", "train_size", "seed"]
    dup = table.duplicated(key, keep=False)
    if dup.any():
        clash = [str(origin[i]) for i in table.index[dup]][:2]
        raise PromptworthError(f"the same run appears twice: {' and '.join(clash)}")
    for column in ("data_seed", "best_step", "trainable_params", "total_params"):  # integers that may be missing
        table[column] = pd.array([None if pd.isna(v) else int(v) for v in table[column]], dtype="Int64")
    test_columns = sorted(c for c in table.columns if c.startswith("test_"))
    table = table[[*BASE_COLUMNS, *budget_columns(table.columns), *test_columns]]
    table = table.sort_values(["task", "method", "model", "template_name", "train_size", "seed"], kind="stable")
    return table.reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# Reading the table back


def read_table(path: str | Path, required: Iterable[str] = ("task", "method", "train_size", "seed", "score")) -> pd.DataFrame:
    """A results CSV with at least ``required`` columns; clear errors for missing/empty/bad files."""
    path = Path(path)
    if not path.is_file():
        raise PromptworthError(f"{path}: no such file")
    try:
        # Names stay as written ("null" is a method, not a missing value); numbers keep NA markers.
        header = pd.read_csv(path, nrows=0).columns
        names = [c for c in header if c in TEXT_COLUMNS]
        table = pd.read_csv(
            path, dtype={c: str for c in names}, keep_default_na=False,
            na_values={c: list(NA_MARKERS) for c in header if c not in TEXT_COLUMNS},
        )
    except pd.errors.EmptyDataError:
        raise PromptworthError(f"{path}: empty file") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise PromptworthError(f"{path}: not a readable CSV ({first_line(exc)})") from None
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise PromptworthError(f"{path}: missing column(s) {', '.join(missing)}")
    if table.empty:
        raise PromptworthError(f"{path}: no rows")
    check_numbers(table, str(path))
    return table


def _is_number_column(name: str) -> bool:
    return name in NUMBER_COLUMNS or name.startswith(("test_", BUDGET_PREFIX))


def check_numbers(table: pd.DataFrame, source: str) -> None:
    """The table's number columns hold numbers: an empty cell is a missing value (allowed, except
    for ``train_size``), text or an infinite number is an error naming the line and column."""
    for column in table.columns:
        values = table[column]
        if column in TEXT_COLUMNS or not (_is_number_column(column) or pd.api.types.is_numeric_dtype(values)):
            continue
        check_number_column(values, column, source, required=column == "train_size")


def check_number_column(values: pd.Series, column: str, source: str, required: bool = False) -> pd.Series:
    """``values`` as floats; text, an infinite number or (when ``required``) an empty cell is an
    error naming the CSV line (the header is line 1) and the column."""
    numbers = pd.to_numeric(values, errors="coerce").astype(float)
    for row, (value, number) in enumerate(zip(values, numbers)):
        if pd.isna(value):
            why = "is missing" if required else ""
        elif pd.isna(number):
            why = "is not a number"
        else:
            why = "" if math.isfinite(number) else "is not a finite number"
        if why:
            shown = "the cell" if pd.isna(value) else repr(value) if isinstance(value, str) else str(value)
            raise PromptworthError(f"{source}: line {row + 2}, column {column!r}: {shown} {why}")
    return numbers


def study_span_s(table: pd.DataFrame) -> float | None:
    """Seconds in which at least one run was in progress: the union of the runs' intervals (each
    from its end minus its process time to its end); None when a run has no finish time. Runs side
    by side overlap in it, so FLOPs over the span are the study's throughput; the pauses of a study
    resumed over several sessions fall outside every interval and do not count."""
    if table.empty or (table["finished_at"] == "").any():
        return None
    ends = pd.to_datetime(table["finished_at"], utc=True).map(lambda t: t.timestamp())
    intervals = sorted(zip(ends - table["process_s"], ends))
    span, (first, last) = 0.0, intervals[0]
    for start, end in intervals[1:]:
        if start > last:  # a gap: nothing ran between last and start
            span, first = span + last - first, start
        last = max(last, end)
    return float(span + last - first)


def stop_summary(table: pd.DataFrame) -> str:
    """How the study's training runs ended, in one line: how many stopped by patience and how many
    ran to the cap (the protocol wants few there: a run at the cap may not have converged), per method
    where some did, among the runs patience could stop; those it could not (SetFit's: they select
    nothing on dev and end at their cap) are counted apart."""
    trained = table[table["stopped"].isin(records.STOPPED)]
    if trained.empty:
        return f"{len(table)} runs; none took a training step"
    can = trained["objective"].map(selects_on_dev) if "objective" in trained else pd.Series(True, trained.index)
    stoppable, apart = trained[can], trained[~can]
    capped = stoppable[stoppable["stopped"] == records.STOPPED_AT_CAP]
    share = f"{100 * len(capped) / len(stoppable):.1f}%" if len(stoppable) else "–"
    line = (f"{len(trained)} runs trained: {len(stoppable) - len(capped)} stopped by patience, {len(capped)} at the "
            f"cap ({share})")
    if len(capped):
        per_method = capped.groupby("method", sort=True).size()
        line += ": " + ", ".join(f"{method} {count}" for method, count in per_method.items())
    if len(apart):
        methods = ", ".join(sorted(set(apart["method"])))
        line += f"; {len(apart)} that select nothing on dev ran to their end ({methods})"
    return line


def device_summary(table: pd.DataFrame) -> str:
    """The machines that ran the table's runs, with how many each ran (most first): a timing or an
    MFU means something only of the CPU named with it, and a study resumed over sessions may mix them."""
    counts = table["device"].replace("", "an unrecorded device").value_counts(sort=False)
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    if len(ordered) == 1:
        return ordered[0][0]
    return ", ".join(f"{device} ({count})" for device, count in ordered)


def cost_summary(table: pd.DataFrame, peak_gflops: float | None = None) -> str:
    """The study's compute in one line: model FLOPs over process time (runs that count both),
    over the span in which runs were in progress, and with the machine's matmul
    peak (``make benchmark`` measures it) the study-level MFU."""
    counted = table.dropna(subset=["flops", "process_s"])
    if counted.empty:
        return f"{len(table)} runs; none records its FLOPs (trained before they were counted)"
    total, seconds = float(counted["flops"].sum()), float(counted["process_s"].sum())
    left_out = f" ({len(table) - len(counted)} runs without a FLOP count left out)" if len(counted) < len(table) else ""
    line = (f"{len(counted)} runs on {device_summary(counted)}: {total / 1e12:.1f} TFLOP of model FLOPs in "
            f"{seconds / 3600:.2f} h of process time, {total / seconds / 1e9:.0f} GFLOP/s{left_out}")
    span = study_span_s(counted)
    if span:
        line += f"; {span / 3600:.2f} h in which runs were in progress: {total / span / 1e9:.0f} GFLOP/s"
        if peak_gflops:
            line += f", study-level MFU {total / span / 1e9 / peak_gflops:.2f} of a {peak_gflops:g} GFLOP/s peak"
    return line
