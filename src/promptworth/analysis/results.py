"""Run records (one JSON per training run) -> the tidy results table, one row per run.

The record is defined in :mod:`promptworth.training.record`; the table's columns here; both are
described in ``docs/contracts.md``.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import pandas as pd

from promptworth.training import record as records
from promptworth.training.record import read_record
from promptworth.data.split_folder import MANIFEST, manifest_sha256, split_checksums, verify_split
from promptworth.errors import PromptworthError
from promptworth.methods.specs import builtin_methods
from promptworth.training.settings import examples_read

if TYPE_CHECKING:
    from promptworth.expected import Asked
    from promptworth.study import StudyConfig

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


def _method_columns(record: Mapping[str, Any]) -> dict[str, Any]:
    """What trains and what a step costs. Records from before methods had parts are of the
    built-in prompt, head and null, which trained every weight: their parts are the registry's,
    their parameter counts unknown."""
    timing = record["timing"]
    parts = record.get("method_parts")
    builtin = builtin_methods().get(record["method"])
    if parts is None and builtin is not None:
        parts = {"objective": builtin.objective, "tuning": builtin.tuning}
    parameters = record.get("parameters") or {}
    steps = timing.get("steps")
    batch_size = (record.get("hyperparameters") or {}).get("batch_size")
    return {
        "objective": (parts or {}).get("objective", ""),
        "tuning": (parts or {}).get("tuning", ""),
        "trainable_params": _number(parameters.get("trainable")),
        "total_params": _number(parameters.get("total")),
        "steps": _number(steps),
        # a run that stops early may never read part of its training set
        "examples_read": (_number(examples_read(int(record["train_size"]), steps, batch_size))
                          if steps is not None and batch_size else math.nan),
        "step_s": _number(timing["train_s"] / steps) if steps and timing.get("train_s") is not None else math.nan,
        "peak_rss_gb": _number(timing.get("peak_rss_gb")),
    }


def split_changed(record: Mapping[str, Any]) -> bool:
    """Whether the split folder a record was trained on now holds another split (a folder that
    is gone, or a record that names none, cannot be checked: False)."""
    recorded = record.get("split_manifest_sha256")
    current = manifest_sha256(Path(record["split_dir"])) if record.get("split_dir") else None
    return recorded is not None and current is not None and current != recorded


def _kshot_dir(task_name: str) -> str | None:
    from promptworth.data.tasks import registry  # pulls in `datasets`: only for folders without a manifest

    spec = registry().get(task_name)
    return spec.kshot_dir if spec is not None else None


def split_problem(folder: Path, task_name: str) -> str | None:
    """Why the files of an existing split folder are not what its manifest (or LM-BFF's published
    checksums) says, or None when they are."""
    kshot_dir = None if (folder / MANIFEST).is_file() else _kshot_dir(task_name)
    try:
        verify_split(split_checksums(folder, task_name, kshot_dir))
    except PromptworthError as exc:
        return str(exc)
    return None


def check_splits(records: Mapping[Path, Mapping[str, Any]]) -> None:
    """Every record whose split folder still exists was trained on that folder's current split:
    the same manifest, and files that still match it. Each folder is hashed once."""
    stale = [
        f"{path} ({Path(record['split_dir']) / MANIFEST})" for path, record in records.items() if split_changed(record)
    ]
    if stale:
        raise PromptworthError(
            f"{len(stale)} run record(s) were trained on a split that has changed since, e.g. {stale[0]}; "
            "delete them to retrain them on the current splits"
        )
    problems: dict[tuple[Path, str], str | None] = {}
    for path, record in records.items():
        if not record.get("split_dir") or not Path(record["split_dir"]).is_dir():
            continue  # a folder no longer here cannot be checked
        key = (Path(record["split_dir"]).resolve(), record["task"])
        if key not in problems:
            problems[key] = split_problem(key[0], key[1])
        if problems[key] is not None:
            raise PromptworthError(f"run record {path}: {problems[key]}")


def check_citations(records: Mapping[Path, Mapping[str, Any]]) -> None:
    """The files records cite by sha256 (a learning-rate selection, a search result) are the ones
    they trained with: two records citing one file with two sha256 are an error, and so is a
    citation of a file that is here now with another sha256. Each file is hashed once."""
    from promptworth.files import sha256_file

    seen: dict[tuple[str, str], tuple[str, Path]] = {}
    current: dict[str, str | None] = {}
    for path, record in records.items():
        selection = record.get("lr_selection")
        citations = {"lr_selection": (selection, "learning-rate selection"), "search": (record.get("search"), "search result"),
                     # a run that took over the pilot run it repeats cites that pilot's record
                     "lr_selection.pilot": (selection.get("pilot") if isinstance(selection, Mapping) else None,
                                            "pilot run")}
        for key, (cited, what) in citations.items():
            if not isinstance(cited, Mapping) or not isinstance(cited.get("file"), str):
                continue
            if not isinstance(cited.get("sha256"), str):
                raise PromptworthError(f"{path}: key '{key}.sha256' must be a string, got {cited.get('sha256')!r}")
            name, sha = cited["file"], cited["sha256"]
            first = seen.setdefault((key, name), (sha, path))
            if first[0] != sha:
                raise PromptworthError(
                    f"run records cite two versions of the {what} {name}: {first[1]} (sha256 {first[0][:12]}…) and "
                    f"{path} (sha256 {sha[:12]}…); the file changed between their runs: delete the records of the "
                    "older version to train them again")
            if name not in current:
                current[name] = sha256_file(Path(name)) if Path(name).is_file() else None
            if current[name] is not None and current[name] != sha:
                raise PromptworthError(
                    f"run record {path} cites the {what} {name} with sha256 {sha[:12]}…, but the file now has sha256 "
                    f"{current[name][:12]}… (it changed after the run): delete the record to train it again")


def check_models(records: Mapping[Path, Mapping[str, Any]]) -> None:
    """The records of one model name one set of weights: two ``model_sha256`` under one model are
    two models in one curve (a model converted or built again differently, or another folder of the
    same name)."""
    weights: dict[str, tuple[str, Path]] = {}
    for path, record in records.items():
        sha = record.get("model_sha256")
        if not isinstance(sha, str):
            continue
        first = weights.setdefault(record["model"], (sha, path))
        if first[0] != sha:
            raise PromptworthError(
                f"run records of model {record['model']!r} were trained on different weights: {first[1]} (model_sha256 "
                f"{first[0][:12]}…) and {path} ({sha[:12]}…); keep the records of one of them")


def study_files(files: Sequence[Path], study: StudyConfig) -> tuple[dict[Path, Asked], list[Path]]:
    """The files among ``files`` that are records of the study's runs (what it asks of each), and
    the others (strays: another study's runs, or stray JSON files), both in ``files``' order."""
    from promptworth.expected import asked
    from promptworth.study import plan

    planned = {Path(item.record_file).resolve(): item for item in map(lambda run: asked(study, run), plan(study))}
    own = {path: planned[path.resolve()] for path in files if path.resolve() in planned}
    return own, [path for path in files if path.resolve() not in planned]


def check_against_study(records: Mapping[Path, Mapping[str, Any]], asked_for: Mapping[Path, Asked],
                        study: StudyConfig) -> None:
    """Every record is what ``study`` asks of its run (promptworth.expected); else one error
    naming the record and the first key that differs."""
    from promptworth.expected import difference

    for path, record in records.items():
        why = difference(study, asked_for[path], record, missing_is_stale=False)
        if why is not None:
            raise PromptworthError(f"run record {path} is not what the study asks for: {why}; delete it (or rerun the "
                                   "study, which trains it again)")


def collect(paths: Iterable[str | Path], study: StudyConfig | None = None, strays: str = "warn") -> pd.DataFrame:
    """The tidy table of every run record under ``paths``; duplicate runs, runs whose split has
    changed since they were trained and records citing a file that changed are errors. With
    ``study``, only the study's runs are read, each must be what the study asks of it, and the
    other files (:func:`study_files`) are named in a warning, or an error (``strays`` "error")."""
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
    check_citations(records)
    check_models(records)
    check_splits(records)
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
    where some did."""
    trained = table[table["stopped"].isin(records.STOPPED)]
    if trained.empty:
        return f"{len(table)} runs; none took a training step"
    capped = trained[trained["stopped"] == records.STOPPED_AT_CAP]
    line = (f"{len(trained)} runs trained: {len(trained) - len(capped)} stopped by patience, {len(capped)} at the "
            f"cap ({100 * len(capped) / len(trained):.1f}%)")
    if len(capped):
        per_method = capped.groupby("method", sort=True).size()
        line += ": " + ", ".join(f"{method} {count}" for method, count in per_method.items())
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
