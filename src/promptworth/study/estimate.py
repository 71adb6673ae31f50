"""How long a study will take, before it runs: every run and pilot run it has still to train, its
steps predicted from the protocol and its seconds from finished records
(:mod:`promptworth.study.calibration`): the study's own first, then those of reference folders.

A run's steps follow the training settings: none at size 0 or for a tuning that takes no step;
the budget (``max_steps``, or the epochs clamped to it) without patience; with patience, the
earliest step it can stop at (:func:`promptworth.study.calibration.patience_floor`) plus the dev
evaluations past it that finished runs stopped by patience went on for (those at the nearest
training-set size), never past the budget. Its seconds: a run's overhead, its steps times the
seconds of a step at its tokens, and the rows it evaluates (dev at each evaluation, test at the
end and at each budget passed) times the seconds of a row. A run that repeats a pilot of the
lr_grid takes over the pilot's record (``promptworth.training.run``) and costs nothing more. A
run no record can calibrate has no estimate: it is counted and named, never guessed.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Collection, Sequence

from promptworth.data.splits import ALL, TRAIN_SIZED_DEV
from promptworth.data.tasks import get_task
from promptworth.methods.registry import search_kind
from promptworth.study.calibration import (
    ENGINE_BEFORE_THE_KEY,
    Calibration,
    Here,
    kind_of,
    mean_batch,
    patience_floor,
    read_samples,
)
from promptworth.study.config import Pilot, Run, StudyConfig
from promptworth.study.planning import extension_pilots, pilots, plan
from promptworth.training.cpu import cpu_has_fast_bf16, cpu_model_name
from promptworth.training.settings import TrainConfig, config_from_mapping, selects_on_dev, settings_read

RUN, PILOT, EXTENSION = "run", "pilot", "extension pilot"


@dataclass(frozen=True)
class Job:
    """One run or pilot run still to train, as the estimate needs it."""

    what: str  # RUN, PILOT or EXTENSION
    model: str  # the model's label
    task: str
    method: str
    size: int | str
    kind: str  # calibration.kind_of
    takes_steps: bool
    settings: TrainConfig
    rows: tuple[int, int, int] | None  # training, dev and test rows (None: the registry does not count them)
    record: str  # the record it will write (StudyConfig.run_file, pilot_file)
    repeats_pilot: bool = False  # a run that takes over its pilot's record
    searches: bool = False  # a run whose search (rule search) runs first: its time is not estimated
    epoch_factor: int = 1  # what an epoch reads per training example (MethodSpec.epoch_examples: SetFit's pairs)
    selects_on_dev: bool = True  # evaluates dev as it trains; else once, at the end (SetFit: no patience)


@dataclass(frozen=True)
class StepPlan:
    """A run's steps: expected, at the earliest stop patience allows, and the chance it ends at the cap."""

    steps: float
    minimum: int
    cap_share: float = 0.0


@dataclass(frozen=True)
class JobEstimate:
    job: Job
    plan: StepPlan
    seconds: float | None  # None: no estimate (``missing`` says why)
    minimum_seconds: float | None  # were every run to stop at its earliest
    why: tuple[str, ...] = ()  # how the estimate is extrapolated (empty: calibrated on its kind of run)
    missing: str | None = None


def predicted_steps(settings: TrainConfig, train_size: int, takes_steps: bool, extras: Sequence[float]) -> StepPlan:
    """A run's steps under ``settings`` on ``train_size`` examples, where finished runs stopped by
    patience went on for ``extras`` dev evaluations past their earliest stop (none: it stops there)."""
    if not takes_steps or not train_size:
        return StepPlan(0.0, 0)
    total, floor = settings.total_steps(train_size), patience_floor(settings, train_size)
    if floor >= total:  # no patience, or none before the budget ends
        return StepPlan(float(total), total, 1.0 if settings.patience else 0.0)
    if not extras:
        return StepPlan(float(floor), floor)
    ends = [min(total, floor + extra * settings.eval_every) for extra in extras]
    return StepPlan(statistics.mean(ends), floor, sum(end >= total for end in ends) / len(ends))


def evaluated_rows(settings: TrainConfig, steps: float, dev_rows: int, test_rows: int,
                   selects_on_dev: bool = True) -> float:
    """Rows a run of ``steps`` steps evaluates: dev at each evaluation (once without a step or an
    interval, or for a run that selects nothing on dev), test once and at each budget it passes."""
    evaluates = steps and settings.eval_every and selects_on_dev
    dev_evaluations = max(1.0, steps / settings.eval_every) if evaluates else 1.0
    tests = 1 + sum(1 for budget in settings.budgets if budget < steps)
    return dev_evaluations * dev_rows + (tests * test_rows if test_rows else 0)


def split_rows(study: StudyConfig, task: str, size: int | str, method: str) -> tuple[int, int, int] | None:
    """The training, dev and test rows of one split, from the registry's row counts (None where it
    has none): as ``promptworth.data.splits`` and ``kshot`` draw them."""
    spec, splits = get_task(task, study.defined_tasks), study.splits
    pool, evaluation = spec.rows.get("pool"), spec.rows.get("eval")
    if evaluation is None or (size == ALL and pool is None):
        return None
    if splits.kind == "kshot":
        per_class = splits.k * spec.num_labels
        test = min(evaluation, splits.train_test_limit or evaluation)
        return (pool - per_class, per_class, test) if size == ALL else (per_class, per_class, test)
    test = min(evaluation, splits.test_limit or evaluation)
    dev = int(size) if study.dev_policy_for(method) in TRAIN_SIZED_DEV else int(splits.dev_size or 0)
    return (pool - dev, dev, test) if size == ALL else (int(size), dev, test)


def _job(study: StudyConfig, item: Run | Pilot, what: str, settings: dict, record: str) -> Job:
    spec = study.method(item.method)
    repeats = (what == RUN and study.uses_lr_selection(item.method, item.size)
               and str(study.lr_band(item.size)) == str(item.size)
               and (item.data_seed, item.train_seed) in _pilot_seeds(study))
    return Job(what, item.model, item.task, item.method, item.size, kind_of(spec.objective, spec.tuning, spec.extras),
               spec.tuning_spec.steps, config_from_mapping(settings_read(spec.objective, settings)),
               split_rows(study, item.task, item.size, item.method), record, repeats,
               what == RUN and search_kind(spec) is not None, spec.epoch_examples(1), selects_on_dev(spec.objective))


def _pilot_seeds(study: StudyConfig) -> set[tuple[int, int]]:
    data_seeds, train_seeds = study.pilot_seeds()
    return {(data_seed, train_seed) for data_seed in data_seeds for train_seed in train_seeds}


def jobs(study: StudyConfig, stale: Collection[str] = ()) -> tuple[list[Job], list[Job], list[Job], int, int]:
    """The runs, pilot runs and extension pilots still to train (no record, or a stale one), and how
    many runs and pilots have finished."""
    def left(path: str) -> bool:
        return str(Path(path)) in stale or not Path(path).is_file()

    planned, grid_pilots = plan(study), pilots(study)
    runs = [_job(study, run, RUN, study.training_for(run.method, run.size), study.run_file(run))
            for run in planned if left(study.run_file(run))]
    grid, extensions = (
        [_job(study, pilot, what, study.pilot_training(pilot.method, pilot.rate, pilot.size), study.pilot_file(pilot))
         for pilot in chosen if left(study.pilot_file(pilot))]
        for what, chosen in ((PILOT, grid_pilots), (EXTENSION, extension_pilots(study))))
    return runs, grid, extensions, len(planned) - len(runs), len(grid_pilots) - len(grid)


def estimate_job(job: Job, calibration: Calibration) -> JobEstimate:
    """One job's steps and seconds (:mod:`promptworth.study.estimate`'s rules)."""
    if job.repeats_pilot:
        return JobEstimate(job, StepPlan(0.0, 0), 0.0, 0.0)
    if job.rows is None:
        return JobEstimate(job, StepPlan(0.0, 0), None, None, missing=f"the registry counts no rows of {job.task}")
    train, dev, test = job.rows
    extras, _ = calibration.extra_evaluations(train) if job.takes_steps and train else ([], None)
    epoch = train * job.epoch_factor  # what an epoch of its steps reads: SetFit's are pairs
    steps = predicted_steps(job.settings, epoch, job.takes_steps, extras)
    if not calibration.knows(job.model):
        return JobEstimate(job, steps, None, None, missing=f"no record of {job.model}")
    length = job.settings.max_length
    row_seconds, why = calibration.row_seconds(job.model, job.task, job.kind, length)
    if row_seconds is None:
        return JobEstimate(job, steps, None, None,
                           missing=f"no record of {job.model} evaluating rows like {job.method}'s")
    step_seconds = 0.0
    if steps.steps:
        line = calibration.step_line(job.model, job.kind, length)
        tokens, token_why = calibration.tokens(job.model, job.task, length)
        if line is None or tokens is None:
            return JobEstimate(job, steps, None, None, missing=f"no record of {job.model} training {job.kind}")
        step_seconds, why = line.at(tokens * mean_batch(epoch, job.settings.batch_size)), (*why, *line.why, *token_why)
    overhead = calibration.overhead(job.model)

    def seconds(n: float) -> float:
        return overhead + n * step_seconds + evaluated_rows(job.settings, n, dev, test, job.selects_on_dev) * row_seconds

    return JobEstimate(job, steps, seconds(steps.steps), seconds(steps.minimum), tuple(dict.fromkeys(why)))


@dataclass(frozen=True)
class StudyEstimate:
    """A study's estimate: its jobs still to train, each estimated, and what calibrated them."""

    runs: list[JobEstimate]
    pilots: list[JobEstimate]
    extensions: list[JobEstimate]  # run only where a choice falls at the grid's edge
    finished_runs: int
    finished_pilots: int
    calibration: Calibration
    at_once: int
    reference: tuple[str, ...] = ()  # the reference folders (the study's own come first)

    @property
    def trained(self) -> list[JobEstimate]:
        return [*self.runs, *self.pilots]


def estimate_study(study: StudyConfig, reference: Sequence[Path], here: Here, at_once: int,
                   stale: Collection[str] = ()) -> StudyEstimate:
    """The estimate of what ``study`` has still to train, from its own finished records
    (``<results>/runs``, ``<results>/lr-grid``) and then those under ``reference``."""
    runs, grid, extensions, finished_runs, finished_pilots = jobs(study, stale)
    # the study's own records, where there is something left to estimate (a finished study has none)
    own = [Path(study.results_dir) / "runs", Path(study.results_dir) / "lr-grid"] if runs or grid or extensions else []
    folders = [(folder, 0) for folder in own] + [(folder, 1) for folder in reference]
    calibration = Calibration(read_samples(folders), here)
    return StudyEstimate(
        runs=[estimate_job(job, calibration) for job in runs], pilots=[estimate_job(job, calibration) for job in grid],
        extensions=[estimate_job(job, calibration) for job in extensions], finished_runs=finished_runs,
        finished_pilots=finished_pilots, calibration=calibration, at_once=max(1, at_once),
        reference=tuple(map(str, reference)))


def here(study: StudyConfig, threads: int) -> Here:
    """What ``study``'s runs will run on here: this machine's CPU, ``threads`` threads a run, the
    precision its training settings resolve to on this CPU, its engine."""
    precision = config_from_mapping(study.training).precision
    if precision == "auto":  # as promptworth.training.runtime.resolve_precision does on a CPU
        precision = "bf16" if cpu_has_fast_bf16() else "fp32"
    return Here(cpu_model_name(), threads, precision, study.training.get("engine", ENGINE_BEFORE_THE_KEY))


def estimate_here(study: StudyConfig, at_once: int, threads: int, stale: Collection[str] = (),
                  reference: Sequence[Path] = ()) -> StudyEstimate:
    """:func:`estimate_study` for runs on this machine, ``at_once`` side by side at ``threads`` threads each."""
    return estimate_study(study, reference, here(study, threads), at_once, stale)
