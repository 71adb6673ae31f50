"""Cost verb: ``costs`` (Snakemake's benchmarks of the training jobs -> one CSV, a row per run)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    costs = subparsers.add_parser(
        "costs",
        help="wall time, CPU time and peak memory of each training run, from Snakemake's benchmark files",
        description="Pair each run record with the benchmark of the job that wrote it (same order) and write one "
        "CSV row per run: the run's model, task, method, size and seeds, whether a pool's worker trained it, "
        "then wall_s, cpu_s, mean_load, max_rss_mb, max_vms_mb, max_uss_mb, max_pss_mb, io_in_mb, io_out_mb "
        "(empty where Snakemake could not measure, and but for wall_s for a pooled run: its client's), then the "
        "run's own peak_rss_gb from its record.",
    )
    costs.add_argument("--runs", nargs="*", type=Path, required=True, metavar="RUN_JSON",
                       help="run records (none: an empty table)")
    costs.add_argument("--benchmarks", nargs="*", type=Path, required=True, metavar="BENCHMARK_TSV",
                       help="Snakemake benchmark files, one per run record, in the same order")
    costs.add_argument("--out", type=Path, required=True, help="CSV to write")
    costs.set_defaults(handler=run_costs)


def run_costs(args: argparse.Namespace) -> int:
    from promptworth.analysis.costs import cost_table
    from promptworth.files import write_csv

    table = cost_table(args.runs, args.benchmarks)
    write_csv(table, args.out)
    print(f"[promptworth] costs of {len(table)} runs -> {args.out}")
    return 0
