"""When did a run's dev score settle? The dev curves of published run records, per model, method
and training-set size: the step (and the passes over the training set) at which each run's dev
score first came within noise of the best it reached, how the run ended, and whether its reported
checkpoint had read its training set once. It justifies the third edition's minimum number of
steps before patience may stop a run (docs/training.md, "Training until converged").

Noise: one binomial standard error of the best dev score on the run's dev rows,
``sqrt(best * (1 - best) / dev_size)``, and at least one dev row (``1 / dev_size``): two dev
scores closer than that are the same score read through a 128-row dev set. Only records of runs
that took training steps count (size 0 takes none).

A run that patience stopped has a curve cut short: its best is the best *so far*, and "settled" is
the step the curve had come within noise of that, a lower bound on when a longer run would have
settled. The runs that went to the cap show the whole curve.

Usage: python benchmarks/dev_curves.py [reports/v2/runs] [--json FILE.json] [--table FILE.md]
(the committed ones: benchmarks/results/dev_curves.json and .md, the second edition's records)
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable


def noise(best: float, dev_size: int) -> float:
    """One binomial standard error of ``best`` on ``dev_size`` rows, at least one row."""
    return max(math.sqrt(best * (1 - best) / dev_size), 1 / dev_size)


def settled_step(curve: list[dict[str, float]], dev_size: int) -> int:
    """The first step whose dev score is within noise of the curve's best."""
    best = max(point["dev_score"] for point in curve)
    margin = noise(best, dev_size)
    return next(int(point["step"]) for point in curve if point["dev_score"] >= best - margin)


def run_row(record: dict[str, Any]) -> dict[str, Any] | None:
    """What this analysis reads of one record (None: a run that took no step, or has no curve)."""
    curve, steps = record.get("dev_curve") or [], (record.get("timing") or {}).get("steps") or 0
    if not curve or not steps or not record.get("dev_size"):
        return None
    batch, size = record["hyperparameters"]["batch_size"], record["train_size"]
    per_epoch = math.ceil(size / batch)
    settled = settled_step(curve, record["dev_size"])
    return {
        "model": record["model"], "method": record["method"], "task": record["task"], "size": size,
        "settled_step": settled, "settled_epochs": settled / per_epoch,
        "steps": steps, "epochs": steps / per_epoch, "stopped": record.get("stopped"),
        "best_step": record["best_step"],
        "best_read_all": record["best_step"] >= per_epoch,  # the reported checkpoint read every example
    }


def rows(folder: Path) -> list[dict[str, Any]]:
    found = []
    for path in sorted(folder.rglob("*.json")):
        row = run_row(json.loads(path.read_text(encoding="utf-8")))
        if row is not None:
            found.append(row)
    return found


def quantile(values: list[float], q: float) -> float:
    """The ``q`` quantile, nearest rank (a value that occurred)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def summary(group: Iterable[dict[str, Any]]) -> dict[str, Any]:
    group = list(group)
    settled = [row["settled_step"] for row in group]
    return {
        "runs": len(group),
        "settled_step_median": statistics.median(settled), "settled_step_max": max(settled),
        "settled_epochs_median": round(statistics.median(row["settled_epochs"] for row in group), 2),
        "steps_median": statistics.median(row["steps"] for row in group),
        "stopped_by_patience": sum(row["stopped"] == "patience" for row in group),
        "at_cap": sum(row["stopped"] == "cap" for row in group),
        "patience_before_one_epoch": sum(row["stopped"] == "patience" and row["epochs"] < 1 for row in group),
        "best_read_fewer_than_all": sum(not row["best_read_all"] for row in group),
    }


def analyse(found: list[dict[str, Any]]) -> dict[str, Any]:
    by_group: dict[tuple[str, str, int], list[dict[str, Any]]] = defaultdict(list)
    for row in found:
        by_group[(row["model"], row["method"], row["size"])].append(row)
    groups = [{"model": m, "method": meth, "size": s, **summary(g)} for (m, meth, s), g in sorted(by_group.items())]
    settled = [row["settled_step"] for row in found]
    capped = [row["settled_step"] for row in found if row["stopped"] == "cap"]
    return {
        **summary(found),
        "settled_step_quantiles": {f"p{q}": quantile(settled, q / 100) for q in (50, 75, 90, 95)},
        "settled_step_quantiles_of_runs_at_cap": {f"p{q}": quantile(capped, q / 100) for q in (50, 90)} if capped else {},
        "groups": groups,
    }


def table(result: dict[str, Any]) -> str:
    head = ("model", "method", "size", "runs", "settled (median, max)", "epochs at settled",
            "steps taken", "patience < 1 epoch", "best read < all", "cap")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for g in result["groups"]:
        lines.append(f"| {g['model']} | {g['method']} | {g['size']} | {g['runs']} | {g['settled_step_median']:g}, "
                     f"{g['settled_step_max']} | {g['settled_epochs_median']:g} | {g['steps_median']:g} | "
                     f"{g['patience_before_one_epoch']} | {g['best_read_fewer_than_all']} | {g['at_cap']} |")
    quantiles = ", ".join(f"{q}: {v}" for q, v in result["settled_step_quantiles"].items())
    capped = ", ".join(f"{q}: {v}" for q, v in result["settled_step_quantiles_of_runs_at_cap"].items())
    lines += ["", f"{result['runs']} runs; settled step quantiles {quantiles}, max {result['settled_step_max']}; of the "
              f"runs at the cap {capped or 'none'}; patience stopped {result['patience_before_one_epoch']} before one "
              f"epoch; {result['best_read_fewer_than_all']} reported a checkpoint that had not read every example"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", nargs="?", default="reports/v2/runs", type=Path, help="run records (searched recursively)")
    parser.add_argument("--json", type=Path, help="also write the numbers as JSON")
    parser.add_argument("--table", type=Path, help="also write the table as Markdown")
    args = parser.parse_args(argv)
    found = rows(args.folder)
    if not found:
        print(f"no run record with a dev curve under {args.folder}", file=sys.stderr)
        return 2
    result = {"records": args.folder.as_posix(), **analyse(found)}
    print(table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    if args.table:
        args.table.write_text(table(result) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
