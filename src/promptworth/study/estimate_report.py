"""A study's estimate in words (:mod:`promptworth.study.estimate`): the summary lines the workflow
and ``promptworth plan`` print, and the table per model, task and method."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Collection, Iterable, Sequence

from pathlib import Path

from promptworth.study.calibration import Sample
from promptworth.study.config import StudyConfig
from promptworth.study.estimate import JobEstimate, StudyEstimate
from promptworth.study.planning import plan, plan_summary

PREFIX = "[promptworth]"


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h"


def _total(estimates: Iterable[JobEstimate], minimum: bool = False) -> float:
    return sum((e.minimum_seconds if minimum else e.seconds) or 0.0 for e in estimates)


def cpu_seconds(estimate: StudyEstimate) -> float:
    """The run time of what is left (of the jobs with an estimate), at the threads of a run."""
    return _total(estimate.trained)


def clock_seconds(estimate: StudyEstimate) -> float:
    """Time on the clock for what is left, ``at_once`` runs side by side: never less than its longest run."""
    longest = max((e.seconds or 0.0 for e in estimate.trained), default=0.0)
    return max(cpu_seconds(estimate) / estimate.at_once, longest)


def _missing(estimates: Sequence[JobEstimate]) -> list[JobEstimate]:
    return [e for e in estimates if e.seconds is None]


def _unknown(estimate: StudyEstimate) -> str:
    """The jobs with no estimate, per model and method, and why (empty: none)."""
    missing = _missing(estimate.trained)
    if not missing:
        return ""
    # a model no record is of, once; else per model and method
    groups = Counter((e.job.model, "" if e.missing == f"no record of {e.job.model}" else f" {e.job.method}", e.missing)
                     for e in missing)
    named = "; ".join(f"{model}{method}: {count} ({why})" for (model, method, why), count in sorted(groups.items()))
    return f"{PREFIX}   no estimate for {len(missing)} of them: {named}"


def _edge(estimate: StudyEstimate) -> str:
    """The extension pilots as an upper bound: per model, task, method and band at most one edge runs."""
    if not estimate.extensions:
        return ""
    groups: dict[tuple, dict[float, list[JobEstimate]]] = defaultdict(lambda: defaultdict(list))
    for e in estimate.extensions:
        groups[(e.job.model, e.job.task, e.job.method, e.job.size)][e.job.settings.learning_rate].append(e)
    worst = [max(by_rate.values(), key=lambda jobs: _total(jobs)) for by_rate in groups.values()]
    count, seconds = sum(len(jobs) for jobs in worst), sum(_total(jobs) for jobs in worst)
    unknown = sum(len(_missing(jobs)) for jobs in worst)
    return (f"{PREFIX}   the grid's edge: up to {count} more pilot runs ({_hours(seconds)} CPU"
            f"{f', {unknown} of them with no estimate' if unknown else ''}) where a choice falls at an edge of the "
            "grid (not counted above)")


def _searches(estimate: StudyEstimate) -> str:
    """The runs whose search runs first: the search's own time is not in the estimate."""
    methods = Counter(e.job.method for e in estimate.runs if e.job.searches)
    if not methods:
        return ""
    named = ", ".join(f"{method} {count}" for method, count in sorted(methods.items()))
    return (f"{PREFIX}   not estimated: the searches (rule search) that {sum(methods.values())} runs apply "
            f"({named}); the runs themselves are")


def _records(estimate: StudyEstimate, used: Sequence[Sample]) -> str:
    by_folder = Counter((sample.source, sample.folder) for sample in used)
    parts = []
    for (source, folder), count in sorted(by_folder.items()):
        devices = Counter((s.cpu, s.threads, s.precision) for s in used if s.folder == folder)
        shown = ", ".join(f"{cpu}, {threads} thread(s), {precision}: {n}" for (cpu, threads, precision), n in
                          sorted(devices.items(), key=lambda item: -item[1]))
        own = " (the study's own)" if source == 0 else ""
        parts.append(f"{count} in {folder}{own} ({shown})")
    return f"{PREFIX}   calibrated on {len(used)} finished records: {'; '.join(parts)}"


def _steps(estimate: StudyEstimate) -> str:
    runs = [e for e in estimate.trained if e.seconds is not None and e.plan.steps]
    patient = [e for e in runs if e.job.settings.patience]
    if not patient:
        return ""
    calibration = estimate.calibration
    sizes = sorted({size for e in patient for size in [calibration.extra_evaluations(e.job.rows[0])[1]] if size})
    cap = sum(e.plan.cap_share for e in patient)
    basis = (f"the dev evaluations past it of finished runs stopped by patience at the nearest size "
             f"(of {', '.join(map(str, sizes))})" if sizes
             else "none past it (no finished run stopped by patience: a lower bound)")
    return (f"{PREFIX}   steps: a run that patience stops takes its earliest stop plus {basis}; all at their earliest "
            f"stop: {_hours(_total(runs, minimum=True))} CPU; about {cap:.0f} of {len(patient)} runs and pilots at "
            f"the cap ({100 * cap / len(patient):.0f}%)")


def _caveats(estimate: StudyEstimate, used: Sequence[Sample]) -> list[str]:
    here, lines = estimate.calibration.here, []
    for what, theirs, ours in (
        ("CPU", {s.cpu for s in used}, here.cpu),
        ("threads a run", {str(s.threads) for s in used}, str(here.threads)),
        ("precision", {s.precision for s in used}, here.precision),
        ("training engine", {s.engine for s in used}, here.engine),
    ):
        other = sorted(theirs - {ours})
        if other:
            lines.append(f"{PREFIX}   note: records with another {what} ({', '.join(other)}) than this study's runs "
                         f"({ours}) calibrate it: their times may not hold here")
    return lines


def summary_lines(estimate: StudyEstimate) -> list[str]:
    """What the study has left to train and how long it will take: CPU hours (run time, at the
    threads of a run) and hours on the clock at ``at_once`` runs side by side, what calibrated it,
    the share extrapolated, the jobs with no estimate, the caveats."""
    runs, grid, threads = estimate.runs, estimate.pilots, estimate.calibration.here.threads
    if not estimate.trained:
        return [f"{PREFIX} estimate: nothing left to train"]
    used = estimate.calibration.used_samples()
    total = _total(estimate.trained)
    if not used or len(_missing(estimate.trained)) == len(estimate.trained):
        why = (f"no finished record calibrates it, of the study's own nor under {', '.join(estimate.reference)}"
               if estimate.reference else "no finished record of the study's own calibrates it; `promptworth plan "
               "--reference FOLDER` estimates from another study's records")
        none = f"{PREFIX} estimate: none yet ({why})"
        return [line for line in (none, _unknown(estimate) if used else "") if line]
    repeats = sum(e.job.repeats_pilot for e in runs)
    extrapolated = sum(e.seconds for e in estimate.trained if e.seconds and e.why)
    lines = [
        f"{PREFIX} estimate: {_hours(total)} CPU ({_hours(_total(runs))} for {len(runs)} runs"
        f"{f', {repeats} of them a pilot repeated' if repeats else ''}, {_hours(_total(grid))} for {len(grid)} pilot "
        f"runs; {threads} thread(s) a run), {_hours(clock_seconds(estimate))} on the clock at "
        f"{estimate.at_once} at a time",
        f"{PREFIX}   extrapolated: {100 * extrapolated / total if total else 0:.0f}% of it"
        + (f" ({'; '.join(_reasons(estimate))})" if extrapolated else ""),
        _unknown(estimate), _searches(estimate), _records(estimate, used), _steps(estimate), _edge(estimate), *_caveats(estimate, used),
    ]
    return [line for line in lines if line]


def study_summary(study: StudyConfig, estimate: StudyEstimate, stale: Collection[str] = ()) -> str:
    """What a study is about to do (:func:`promptworth.study.planning.plan_summary`) and how long it will take."""
    files = [Path(study.run_file(run)) for run in plan(study)]
    return "\n".join([plan_summary(study, files, stale), *summary_lines(estimate)])


def _reasons(estimate: StudyEstimate, shown: int = 3) -> list[str]:
    weights = Counter()
    for e in estimate.trained:
        for why in e.why:
            weights[why] += e.seconds or 0.0
    return [f"{why}: {_hours(seconds)}" for why, seconds in weights.most_common(shown)]


def table(estimate: StudyEstimate) -> str:
    """One row per model, task and method: runs and pilots to train, the mean steps of those that
    train, CPU hours, and how it is estimated."""
    groups: dict[tuple[str, str, str], list[JobEstimate]] = defaultdict(list)
    for e in estimate.trained:
        groups[(e.job.model, e.job.task, e.job.method)].append(e)
    header = ["model", "task", "method", "runs", "pilots", "steps", "CPU h", "estimate"]
    rows = []
    for (model, task, method), estimates in groups.items():
        trained = [e for e in estimates if e.plan.steps]
        steps = f"{sum(e.plan.steps for e in trained) / len(trained):.0f}" if trained else "0"
        missing = _missing(estimates)
        how = (f"none for {len(missing)}: {missing[0].missing}" if missing
               else "extrapolated" if any(e.why for e in estimates) else "calibrated")
        rows.append([model, task, method, str(sum(e.job.what == "run" for e in estimates)),
                     str(sum(e.job.what != "run" for e in estimates)), steps, f"{_total(estimates) / 3600:.2f}", how])
    rows.append(["total", "", "", str(len(estimate.runs)), str(len(estimate.pilots)), "",
                 f"{_total(estimate.trained) / 3600:.2f}", ""])
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
                     for row in [header, *rows])
