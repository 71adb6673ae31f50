"""How far off is a study's estimate before it runs? ``promptworth plan``'s estimate
(promptworth.study.estimate) of a published edition, made from other records with the edition's
own hidden (its results folder replaced by an empty one), against what its runs took.

Each scenario estimates one edition from one set of reference folders, on the CPU and threads the
edition ran with (the records' own: AMD EPYC, bf16), and compares, over the runs and pilots the
estimate covers, the estimated CPU time with the actual (``timing.process_s``, else ``wall_s``, of
each record; nothing for a run that took over its pilot's record) and the predicted steps with the
steps taken. The runs it has no estimate for are counted, with their actual time. The clock: the
estimate at two runs at a time against the time in which at least one of the edition's records
was being made (the union of their [finished_at - time, finished_at]).

Reads committed records only; measures nothing. Usage:
python benchmarks/plan_estimate.py [--json benchmarks/results/plan_estimate.json]
                                   [--table benchmarks/results/plan_estimate.md]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from promptworth.study.calibration import Here
from promptworth.study.config_file import read_config_file, schema_file
from promptworth.study.estimate import JobEstimate, estimate_study
from promptworth.study.load import load_study

ROOT = Path(__file__).resolve().parent.parent
CPU = "AMD EPYC"  # every published record's CPU (their `device`)
BEFORE_V2 = ["reports/v1/runs", "reports/strategies/runs", "reports/method-defaults/runs", "reports/lmbff/runs"]


@dataclass(frozen=True)
class Scenario:
    key: str  # a short name (docs/quotes.yaml selects a row by it)
    name: str
    config: str
    results: str  # the edition's results folder (its records: runs/, lr-grid/)
    reference: tuple[str, ...]
    threads: int  # a run's threads in the edition


SCENARIOS = (
    Scenario("in_sample", "second edition from its own records (in sample: the model's error alone)",
             "config/studies/study-v2.yaml", "reports/v2", ("reports/v2/runs", "reports/v2/lr-grid"), 1),
    Scenario("pilots_only", "second edition from its own pilots only (the estimate once the pilots are done)",
             "config/studies/study-v2.yaml", "reports/v2", ("reports/v2/lr-grid",), 1),
    Scenario("before", "second edition from the records made on this CPU before it (first edition, strategies, "
             "method defaults, LM-BFF's table)", "config/studies/study-v2.yaml", "reports/v2", tuple(BEFORE_V2), 1),
    Scenario("v2_from_v1", "second edition from the first edition's records", "config/studies/study-v2.yaml",
             "reports/v2", ("reports/v1/runs",), 1),
    Scenario("v1_from_v2", "first edition from the second edition's records", "config/studies/study-v1.yaml",
             "reports/v1", ("reports/v2/runs", "reports/v2/lr-grid"), 2),
)


def _record(path: Path) -> dict | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def actual_seconds(record: dict) -> float:
    """What a run took: nothing for a run that took over its pilot's record, else its process time."""
    if (record.get("lr_selection") or {}).get("pilot"):
        return 0.0
    timing = record["timing"]
    return float(timing.get("process_s") or timing["wall_s"])


def busy_hours(records: list[dict]) -> float:
    """The hours in which at least one of ``records`` was being made."""
    spans = sorted((end - actual_seconds(r), end) for r in records if actual_seconds(r)
                   for end in [datetime.fromisoformat(r["timing"]["finished_at"]).timestamp()])
    total, start, stop = 0.0, None, None
    for begin, end in spans:
        if stop is None or begin > stop:
            total += (stop - start) if stop is not None else 0.0
            start, stop = begin, end
        else:
            stop = max(stop, end)
    return (total + ((stop - start) if stop is not None else 0.0)) / 3600


def compare(scenario: Scenario) -> dict:
    config = read_config_file(ROOT / scenario.config)
    with tempfile.TemporaryDirectory() as empty:
        config["results_dir"] = empty
        study = load_study(config, schema_file())
        here = Here(CPU, scenario.threads, "bf16")
        estimate = estimate_study(study, [ROOT / folder for folder in scenario.reference], here, at_once=2)
        pairs = [(e, _record(ROOT / scenario.results / Path(e.job.record).relative_to(empty)))
                 for e in estimate.trained]
    covered = [(e, r) for e, r in pairs if e.seconds is not None and r is not None]
    missing = [(e, r) for e, r in pairs if e.seconds is None and r is not None]
    estimated = sum(e.seconds for e, _ in covered) / 3600
    actual = sum(actual_seconds(r) for _, r in covered) / 3600
    trained = [(e, r) for e, r in covered if actual_seconds(r) and r["timing"].get("steps")]
    errors = [e.seconds / actual_seconds(r) - 1 for e, r in trained]
    records = [r for _, r in pairs if r is not None]
    return {
        "key": scenario.key, "scenario": scenario.name, "config": scenario.config,
        "reference": list(scenario.reference),
        "jobs": len(pairs), "estimated_jobs": len(covered), "no_estimate_jobs": len(missing),
        "no_estimate_actual_h": round(sum(actual_seconds(r) for _, r in missing) / 3600, 2),
        "estimated_cpu_h": round(estimated, 2), "actual_cpu_h": round(actual, 2),
        "error": round(estimated / actual - 1, 3) if actual else None,
        "minimum_cpu_h": round(sum(e.minimum_seconds for e, _ in covered) / 3600, 2),
        "extrapolated_share": round(sum(e.seconds for e, _ in covered if e.why) / 3600 / estimated, 3)
        if estimated else None,
        "predicted_steps": round(sum(e.plan.steps for e, _ in covered)), "steps_taken":
            sum(r["timing"].get("steps") or 0 for e, r in covered if actual_seconds(r)),
        "run_error_median_abs": round(statistics.median(abs(x) for x in errors), 3) if errors else None,
        "estimated_clock_h_2_at_a_time": round(estimated / 2, 2),
        "actual_busy_h": round(busy_hours(records), 2) if all("finished_at" in r["timing"] for r in records) else None,
        "records_used": len(estimate.calibration.used_samples()),
    }


def table(rows: list[dict]) -> str:
    lines = ["| scenario | runs + pilots estimated (of) | estimated CPU h | actual CPU h | error | "
             "at the earliest stop | extrapolated | steps predicted / taken | median error a run | "
             "no estimate (their actual h) | on the clock, 2 at a time / busy |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        share = f"{100 * r['extrapolated_share']:.0f}%" if r["extrapolated_share"] is not None else "–"
        lines.append(
            f"| {r['scenario']} | {r['estimated_jobs']} ({r['jobs']}) | {r['estimated_cpu_h']:.1f} | "
            f"{r['actual_cpu_h']:.1f} | {100 * r['error']:+.0f}% | {r['minimum_cpu_h']:.1f} | {share} | "
            f"{r['predicted_steps']:,} / {r['steps_taken']:,} | {100 * r['run_error_median_abs']:.0f}% | "
            f"{r['no_estimate_jobs']} ({r['no_estimate_actual_h']:.1f}) | " + _clock(r))
    return "\n".join(lines) + "\n"


def _clock(row: dict) -> str:
    """The estimate on the clock against the edition's busy hours, where it covers every run and both are known."""
    if row["no_estimate_jobs"] or row["actual_busy_h"] is None:
        return "– |"
    return f"{row['estimated_clock_h_2_at_a_time']:.1f} h / {row['actual_busy_h']:.1f} h |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks/results/plan_estimate.json")
    parser.add_argument("--table", type=Path, default=ROOT / "benchmarks/results/plan_estimate.md")
    args = parser.parse_args()
    rows = [compare(scenario) for scenario in SCENARIOS]
    args.json.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    args.table.write_text(table(rows), encoding="utf-8")
    print(table(rows), end="")


if __name__ == "__main__":
    main()
