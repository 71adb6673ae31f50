"""Study verbs: ``plan`` (what a study has still to train and how long it will take), ``progress``
(runs done and an estimate of the time left), ``unlock-stale``
(release the lock a hard-killed Snakemake left, when no other Snakemake runs here), ``pool``
(run a study with long-lived training processes), ``stages`` and ``run-stages`` (the order a
study trains in, and a command run stage by stage)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from promptworth.cli.output import Output
from promptworth.errors import PromptworthError


# Runs that finished more than this long before the next one started belong to an earlier
# invocation of the study (a resumed study does not count the pause).
STRETCH_GAP_S = 600.0


def estimate(records: list[tuple[float | None, float]], total: int, now: float) -> tuple[int, float | None]:
    """Runs done and seconds left, from (finish time or None, wall seconds) of each finished run.

    The rate is measured over the latest unbroken stretch of finished runs (from the start of its
    first run to now), so jobs running side by side count as they should and a pause before a
    resumption does not. Runs without a finish time (older records) count as done; if none has
    one, each remaining run is taken to last the mean wall time, one at a time.
    """
    done = len(records)
    if done == 0:
        return 0, None
    remaining = max(total - done, 0)
    timed = sorted(((finished, wall) for finished, wall in records if finished is not None), reverse=True)
    if not timed:
        return done, sum(wall for _, wall in records) / done * remaining
    stretch_start = timed[0][0] - timed[0][1]
    in_stretch = 0
    for finished, wall in timed:
        if finished < stretch_start - STRETCH_GAP_S:
            break
        stretch_start = min(stretch_start, finished - wall)
        in_stretch += 1
    return done, max(now - stretch_start, 1e-9) / in_stretch * remaining


def finish_time(timing: dict) -> float | None:
    """``timing.finished_at`` as a POSIX time; None when the record predates the field."""
    stamp = timing.get("finished_at")
    return datetime.fromisoformat(stamp).timestamp() if isinstance(stamp, str) else None


def run_progress(args: argparse.Namespace) -> Output:
    if args.total <= 0:
        raise PromptworthError(f"--total must be positive, got {args.total}")
    records = []
    for path in args.runs_dir.rglob("*.json"):
        try:
            timing = json.loads(path.read_text(encoding="utf-8"))["timing"]
            records.append((finish_time(timing), float(timing["wall_s"])))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
    data = {"what": args.what, "total": args.total, "records": len(records)}
    if len(records) > args.total:  # records of another study in the same folder
        return Output({**data, "done": None, "left_s": None},
                      f"[promptworth] {args.runs_dir} holds {len(records)} records, more than the {args.total} "
                      f"{args.what} of this study (records of another study share the folder): no count of this study's")
    done, left = estimate(records, args.total, time.time())
    share = 100 * done / args.total
    # the pace of the runs done: a ladder's larger runs take longer (`promptworth plan` estimates each run)
    eta = "" if left is None else f"; about {left / 60:.1f} min left at the pace so far"
    return Output({**data, "done": done, "left_s": left},
                  f"[promptworth] {done}/{args.total} {args.what} done ({share:.0f}%){eta}")


def run_plan(args: argparse.Namespace) -> Output:
    from promptworth.study import tiny_variant
    from promptworth.study.config_file import read_config_file, schema_file
    from promptworth.study.estimate import estimate_here
    from promptworth.study.estimate_report import study_summary, table
    from promptworth.study.load import load_study
    from promptworth.study.reuse import reuse

    for name, value in (("--threads", args.threads), ("--at-once", args.at_once)):
        if value is not None and value < 1:
            raise PromptworthError(f"{name} must be at least 1, got {value}")
    for folder in args.reference:
        if not folder.is_dir():
            raise PromptworthError(f"--reference {folder}: no such folder (give folders of run records, e.g. "
                                   "reports/v2/runs reports/v2/lr-grid)")
    if not schema_file().is_file():
        raise PromptworthError(f"promptworth plan reads a study as the workflow does: run it in a checkout of "
                               f"promptworth (it needs {schema_file()})")
    # the study as the workflow reads it (the tiny variant's under PROMPTWORTH_FAST=1)
    study = load_study(tiny_variant.study_config(read_config_file(args.configfile)), schema_file())
    threads = args.threads or min(study.resources_for(model)["threads"] for model in study.models)
    at_once = args.at_once or max(1, (os.cpu_count() or 1) // threads)
    stale = reuse(study).stale
    estimate = estimate_here(study, at_once, threads, stale, args.reference)
    text = "\n".join(([table(estimate)] if estimate.trained else []) + [study_summary(study, estimate, stale)])
    return Output(plan_data(estimate), text)


def plan_data(estimate) -> dict:
    """``promptworth plan --json``: what is left to train, each job's estimate, and the totals."""
    from promptworth.study.estimate_report import clock_seconds, cpu_seconds

    jobs = [{"what": e.job.what, "model": e.job.model, "task": e.job.task, "method": e.job.method,
             "size": e.job.size, "record": e.job.record, "steps": e.plan.steps, "seconds": e.seconds,
             "missing": e.missing, "extrapolated": list(e.why)}
            for e in [*estimate.runs, *estimate.pilots, *estimate.extensions]]
    # no job with an estimate: none yet (null), not zero
    known = not estimate.trained or any(e.seconds is not None for e in estimate.trained)
    return {"finished_runs": estimate.finished_runs, "finished_pilots": estimate.finished_pilots,
            "runs_left": len(estimate.runs), "pilots_left": len(estimate.pilots), "at_once": estimate.at_once,
            "threads": estimate.calibration.here.threads, "cpu_s": cpu_seconds(estimate) if known else None,
            "clock_s": clock_seconds(estimate) if known else None, "reference": list(estimate.reference),
            "jobs": jobs}


def _study_stages(configfile: Path):
    """The study of ``configfile`` as the workflow reads it (the tiny variant's under
    PROMPTWORTH_FAST=1) and its stages, each with its runs' record files."""
    from promptworth.study import tiny_variant
    from promptworth.study.config_file import read_config_file, schema_file
    from promptworth.study.load import load_study
    from promptworth.study.planning import stages

    if not schema_file().is_file():
        raise PromptworthError(f"the stages of a study are read as the workflow reads it: run this in a checkout of "
                               f"promptworth (it needs {schema_file()})")
    study = load_study(tiny_variant.study_config(read_config_file(configfile)), schema_file())
    return [(name, [Path(study.run_file(run)) for run in runs]) for name, runs in stages(study)]


def _made_on(files: list[Path]) -> dict[str, int]:
    """The machines and precisions the finished records of ``files`` were made on, with how many each
    (most first): a study resumed over sessions must not mix CPU kinds silently."""
    from collections import Counter

    from promptworth.training.record import read_record

    made = Counter(f"{record.get('device') or 'unrecorded device'}, {record.get('precision') or 'unrecorded precision'}"
                   for record in (read_record(file) for file in files if file.is_file()))
    return dict(made.most_common())


def run_stages(args: argparse.Namespace) -> Output:
    rows = [{"stage": name, "runs": len(files), "finished": sum(file.is_file() for file in files),
             "made_on": _made_on(files)} for name, files in _study_stages(args.configfile)]
    width = max(len(row["stage"]) for row in rows)
    text = "\n".join(f"{row['stage']:<{width}}  {row['finished']:>4} of {row['runs']:>4} runs finished"
                      + (" (" + "; ".join(f"{made}: {n}" for made, n in row["made_on"].items()) + ")"
                         if row["made_on"] else "") for row in rows)
    return Output({"stages": rows}, text)


def run_run_stages(args: argparse.Namespace) -> int:
    from promptworth.study.config_file import check_configfiles

    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise PromptworthError("run-stages needs the study's command after -- (e.g. promptworth pool --size 2 -- "
                               "snakemake --cores 2 --configfile CONFIG); each stage's record files follow it")
    check_configfiles(command)  # a config that would run code is refused before Snakemake reads it
    ordered = _study_stages(args.configfile)
    names = [name for name, _ in ordered]
    for name in args.stage:
        if name not in names:
            raise PromptworthError(f"--stage {name}: the study has no stage {name!r} (its stages, in order: "
                                   f"{', '.join(names)})")
    for name, files in ordered:
        if args.stage and name not in args.stage:
            continue
        left = sum(not file.is_file() for file in files)
        if not left:
            print(f"[promptworth] stage {name}: its {len(files)} runs are finished", file=sys.stderr, flush=True)
            continue
        print(f"[promptworth] stage {name}: {left} of its {len(files)} runs to train", file=sys.stderr, flush=True)
        done = subprocess.run([*command, "--", *map(str, files)], env=os.environ.copy(), check=False)
        if done.returncode != 0:
            print(f"[promptworth] stage {name} failed (exit {done.returncode}); the stages after it did not run",
                  file=sys.stderr, flush=True)
            return done.returncode
    return 0


def run_unlock_stale(args: argparse.Namespace) -> int:
    from promptworth.study import locks

    from promptworth.study.config_file import check_configfiles

    command = [word for word in args.snakemake if word != "--"]
    if not command:
        raise PromptworthError("unlock-stale needs the study's Snakemake command line after it")
    check_configfiles(command)  # a config that would run code is refused before any Snakemake reads it
    here = Path.cwd()
    if not locks.has_locks(here):
        return 0
    running = locks.snakemake_processes(here)
    if running:
        first = running[0]
        raise PromptworthError(
            f"another Snakemake is running in {here} (pid {first.pid}: {first.command[:120]}); "
            "wait for it to finish, or stop it (kill " + " ".join(str(p.pid) for p in running) + ") and rerun"
        )
    print(f"[promptworth] {here} is locked by a Snakemake that was killed (none runs here now): unlocking",
          file=sys.stderr, flush=True)
    done = subprocess.run([*command, "--unlock"], env=os.environ.copy(), check=False)
    if done.returncode != 0:
        raise PromptworthError(f"`{' '.join(command)} --unlock` failed (exit {done.returncode})")
    return 0


def run_pool(args: argparse.Namespace) -> int:
    from promptworth.training.pool import run_pool as pool

    from promptworth.study.config_file import check_configfiles

    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    check_configfiles(command)  # a config that would run code is refused before Snakemake reads it
    return pool(args.size, command, args.runs_per_gpu)
