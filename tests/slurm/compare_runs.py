"""Compare the results of two runs of the same study (tests/slurm/run.sh: SLURM vs local).

    python tests/slurm/compare_runs.py RESULTS_A RESULTS_B [--expect N]

Every run record (runs/**/*.json) must exist in both folders with the same results (scores, test
metrics, dev curve, best step, split checksum), and runs.csv must agree row by row on every column
but timings. Prints one line per difference; exit 1 when there is any.
"""

import argparse
import csv
import json
import sys
from pathlib import Path

# The fields of a run record that are results; timing, versions, paths and git commit may differ.
RESULT_FIELDS = (
    "task",
    "method",
    "train_size",
    "data_seed",
    "train_seed",
    "split_manifest_sha256",
    "metric",
    "score",
    "dev_score",
    "best_step",
    "dev_curve",
    "test",
)


def timing_column(name):
    # finished_at: when the run ended (the clock, not the result)
    return name == "wall_s" or name.endswith("_s") or "time" in name or "rss" in name or name == "finished_at"


def run_records(results):
    runs = Path(results) / "runs"
    return {str(path.relative_to(runs)): path for path in sorted(runs.rglob("*.json"))}


def compare(a, b, expect=None, runs_only=False, subset=False):
    problems = []
    runs_a, runs_b = run_records(a), run_records(b)
    if expect is not None and len(runs_a) != expect:
        problems.append(f"{a}: {len(runs_a)} run records, expected {expect}")
    for name in sorted(set(runs_a) ^ set(runs_b)):
        if subset and name in runs_b:
            continue
        problems.append(f"run record {name} only in {a if name in runs_a else b}")
    for name in sorted(set(runs_a) & set(runs_b)):
        rec_a = json.loads(runs_a[name].read_text())
        rec_b = json.loads(runs_b[name].read_text())
        for field in RESULT_FIELDS:
            if field not in rec_a and field not in rec_b:
                continue
            if rec_a.get(field) != rec_b.get(field):
                problems.append(f"{name}: {field} differs: {rec_a.get(field)!r} != {rec_b.get(field)!r}")
        if "score" not in rec_a:
            problems.append(f"{name}: no score in the run record")

    if runs_only:
        return problems, len(runs_a)
    csv_a, csv_b = Path(a) / "runs.csv", Path(b) / "runs.csv"
    for path in (csv_a, csv_b):
        if not path.exists():
            problems.append(f"missing {path}")
    if csv_a.exists() and csv_b.exists():
        rows_a = list(csv.DictReader(csv_a.open()))
        rows_b = list(csv.DictReader(csv_b.open()))
        if len(rows_a) != len(rows_b):
            problems.append(f"runs.csv: {len(rows_a)} rows != {len(rows_b)} rows")
        columns = [c for c in (rows_a[0].keys() if rows_a else []) if not timing_column(c)]
        key = lambda row: tuple(row.get(c, "") for c in ("task", "method", "train_size", "seed"))
        for row_a, row_b in zip(sorted(rows_a, key=key), sorted(rows_b, key=key)):
            for column in columns:
                if row_a.get(column) != row_b.get(column):
                    problems.append(
                        f"runs.csv {key(row_a)}: {column} differs: {row_a.get(column)!r} != {row_b.get(column)!r}"
                    )
    return problems, len(runs_a)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a")
    parser.add_argument("b")
    parser.add_argument("--expect", type=int, help="number of run records each folder must hold")
    parser.add_argument("--runs-only", action="store_true", help="compare the run records only (no runs.csv)")
    parser.add_argument("--subset", action="store_true", help="A holds some of B's run records (implies --runs-only)")
    args = parser.parse_args()
    args.runs_only = args.runs_only or args.subset
    problems, count = compare(args.a, args.b, args.expect, args.runs_only, args.subset)
    for problem in problems:
        print(f"DIFF {problem}")
    if problems:
        print(f"results differ: {len(problems)} difference(s)")
        return 1
    what = "run records" if args.runs_only else "run records and runs.csv"
    print(f"results equal: {count} {what} (scores, test metrics, dev curves)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
