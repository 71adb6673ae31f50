"""What each training run cost: Snakemake's benchmark of its job, one table row per run.

Snakemake writes one TSV per benchmarked job: a header and one row of wall seconds, peak memory
(MB), I/O (MB), mean CPU load and CPU seconds. Each benchmark is read beside the run record it
measured, so that its row names the run as ``runs.csv`` does and the two tables join on
``RUN_COLUMNS``.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pandas as pd

from promptworth.training.record import read_record
from promptworth.errors import PromptworthError

RUN_COLUMNS = ("model", "task", "method", "train_size", "data_seed", "train_seed")
# Snakemake's benchmark columns -> ours, with their units in the name ("h:m:s" repeats "s").
BENCHMARK_COLUMNS = {
    "s": "wall_s",
    "cpu_time": "cpu_s",
    "mean_load": "mean_load",
    "max_rss": "max_rss_mb",
    "max_vms": "max_vms_mb",
    "max_uss": "max_uss_mb",
    "max_pss": "max_pss_mb",
    "io_in": "io_in_mb",
    "io_out": "io_out_mb",
}
COLUMNS = (*RUN_COLUMNS, "pooled", *BENCHMARK_COLUMNS.values(), "peak_rss_gb")
# How Snakemake writes a value it could not measure (a job that ended before its first sample,
# I/O counters the system does not offer); the wall time is always measured.
NOT_MEASURED = ("NA", "-")
ALWAYS_MEASURED = "s"
# The benchmark's measures of the job's own processes (all but its wall time): where a pool's worker
# trained the run (the record's ``timing.pooled``) they are of the thin client that waited for it,
# and are left empty.
PROCESS_COLUMNS = tuple(name for name in BENCHMARK_COLUMNS if name != ALWAYS_MEASURED)


@dataclass(frozen=True)
class Benchmark:
    """One job's measurements, keyed by Snakemake's column names; NaN where not measured."""

    values: dict[str, float]


def read_benchmark(path: str | Path) -> Benchmark:
    """One Snakemake benchmark TSV, checked: the columns above, one row, non-negative numbers."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PromptworthError(f"{path}: no such benchmark file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PromptworthError(f"{path}: cannot read ({exc})") from None
    rows = [row for row in csv.reader(text.splitlines(), delimiter="\t") if row]
    if not rows:
        raise PromptworthError(f"{path}: empty file (not a Snakemake benchmark?)")
    header, body = rows[0], rows[1:]
    missing = [name for name in BENCHMARK_COLUMNS if name not in header]
    if missing:
        raise PromptworthError(f"{path}: missing benchmark column(s) {', '.join(missing)}")
    if len(body) != 1:
        raise PromptworthError(f"{path}: expected one benchmark row, found {len(body)}")
    if len(body[0]) != len(header):
        raise PromptworthError(f"{path}: the row has {len(body[0])} fields, the header {len(header)}")
    row = dict(zip(header, body[0]))
    return Benchmark({name: _measurement(path, name, row[name]) for name in BENCHMARK_COLUMNS})


def _measurement(path: Path, name: str, text: str) -> float:
    if text in NOT_MEASURED and name != ALWAYS_MEASURED:
        return math.nan
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise PromptworthError(f"{path}: column {name!r} is {text!r}, not a non-negative number")
    return value


def cost_row(record: dict, benchmark: Benchmark) -> dict:
    """The table row of one run: its identity from the record, its costs from the benchmark (of
    the job's processes only where they trained it), and the run's own peak memory from the record."""
    timing = record["timing"]
    pooled = timing.get("pooled")  # None: a record made before runs said so
    row: dict = {name: record[name] for name in RUN_COLUMNS}
    row["pooled"] = "" if pooled is None else str(bool(pooled)).lower()
    row.update({ours: math.nan if pooled and theirs in PROCESS_COLUMNS else benchmark.values[theirs]
                for theirs, ours in BENCHMARK_COLUMNS.items()})
    peak = timing.get("peak_rss_gb")
    row["peak_rss_gb"] = math.nan if peak is None else float(peak)
    return row


def cost_table(runs: Sequence[str | Path], benchmarks: Sequence[str | Path]) -> pd.DataFrame:
    """One row per run; ``benchmarks[i]`` is the benchmark of the job that wrote ``runs[i]``.

    Every file is read and checked before anything is returned; no runs give an empty table.
    """
    if len(runs) != len(benchmarks):
        raise PromptworthError(
            f"{len(runs)} run records but {len(benchmarks)} benchmarks: give one benchmark per run, in the same order"
        )
    rows = [cost_row(read_record(Path(run)), read_benchmark(bench)) for run, bench in zip(runs, benchmarks)]
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    # data_seed may be null in a record: keep the column integral (nullable) rather than float
    return table.astype({"train_size": "Int64", "data_seed": "Int64", "train_seed": "Int64"})
