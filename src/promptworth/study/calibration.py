"""What finished run records say about the cost of runs not yet made: the calibration of a study's
estimate (:mod:`promptworth.study.estimate`).

A record becomes a :class:`Sample`: its model, its method's *kind* (the tuning, which sets what a
step costs, and the extras that lengthen every input), its max_length, how many steps it took and
how many rows it evaluated, and the seconds of each (``timing.train_s``, ``eval_s``, and the rest
of ``process_s``). :class:`Calibration` answers the estimate's questions from them: seconds per
step as a line in the tokens of a step, seconds per evaluated row, a task's tokens per example,
a run's overhead, and how many dev evaluations past the earliest stop patience let runs go on.
Each answer comes from the records nearest what is asked (:func:`preferred`), and says when it is
*extrapolated*: drawn from records of another task, max_length or model than the run's.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from promptworth.errors import PromptworthError
from promptworth.methods import specs as method_specs
from promptworth.backbones.resolve import model_label
from promptworth.training.cpu import read_cpu
from promptworth.training.record import read_record, stopped
from promptworth.training.settings import TrainConfig

# the extras whose inputs hold more than the row itself (demonstrations): their rows cost more
LENGTHENING_EXTRAS = ("context", "demos")
# A record from before the training setting ``engine`` (speed levers) was made by this engine.
ENGINE_BEFORE_THE_KEY = "v2"


def kind_of(objective: str, tuning: str, extras: Sequence[str]) -> str:
    """What sets a run's cost per step and per row: its tuning and the extras that lengthen its
    inputs (``full``, ``lora``, ``none+context``); ``majority`` for the class count without a model."""
    if objective == "majority":
        return "majority"
    return "+".join([tuning, *sorted(extra for extra in extras if extra in LENGTHENING_EXTRAS)])


def eval_class(kind: str) -> str:
    """Which records' evaluation cost a kind shares: rows of the same shape cost the same whatever
    trains (``plain``), longer rows (demonstrations) and no model at all do not."""
    return kind if kind == "majority" or "+" in kind else "plain"


def mean_batch(train_size: int, batch_size: int) -> float:
    """The mean examples of a step: an epoch is ``ceil(train_size / batch_size)`` batches."""
    return train_size / math.ceil(train_size / batch_size)


def patience_floor(config: TrainConfig, train_size: int) -> int:
    """The earliest step at which patience can stop a run (its budget when that is sooner): the
    first dev evaluation sets the best, ``patience`` more without a better one stop the run, and
    not before :meth:`TrainConfig.patience_from` (``promptworth.training.loop``)."""
    total = config.total_steps(train_size)
    if not config.patience or not config.eval_every:
        return total
    evaluations = max(config.patience + 1, math.ceil(config.patience_from(train_size) / config.eval_every))
    return min(total, evaluations * config.eval_every)


@dataclass(frozen=True)
class Sample:
    """One finished run, as the estimate reads its record."""

    source: int  # its folder's rank: 0 for the study's own records, 1 for a reference folder's
    folder: str  # the folder it was found under
    model: str
    task: str
    kind: str
    max_length: int
    train_size: int
    steps: int
    train_s: float
    eval_s: float
    eval_rows: int
    overhead_s: float
    tokens_per_step: float | None  # None: no step, or a record that does not say
    extra_evaluations: float | None  # dev evaluations past the earliest stop (runs stopped by patience)
    cpu: str
    threads: int | None
    engine: str
    precision: str
    batch: float = 1.0  # the mean examples of its steps (mean_batch)

    @property
    def tokens_per_example(self) -> float | None:
        return None if self.tokens_per_step is None else self.tokens_per_step / self.batch


def _settings(record: Mapping[str, Any]) -> TrainConfig | None:
    """The record's training settings (its hyperparameters that are settings; older records lack
    some); None for settings of a protocol this version does not run."""
    known = set(TrainConfig.__dataclass_fields__)
    given = {key: value for key, value in record["hyperparameters"].items() if key in known}
    given["budgets"] = tuple(given.get("budgets") or ())
    try:
        return TrainConfig(**given)
    except PromptworthError:
        return None


def _kind(record: Mapping[str, Any]) -> str | None:
    parts = record.get("method_parts")
    if isinstance(parts, Mapping) and isinstance(parts.get("objective"), str) and isinstance(parts.get("tuning"), str):
        return kind_of(parts["objective"], parts["tuning"], parts.get("extras") or ())
    try:  # older records name a built-in method only
        spec = method_specs.resolve(record["method"], {})
    except PromptworthError:
        return None
    return kind_of(spec.objective, spec.tuning, spec.extras)


def _epoch_examples(record: Mapping[str, Any]) -> int:
    """What an epoch of the record's training steps read (MethodSpec.epoch_examples: SetFit's are pairs)."""
    parts = record.get("method_parts")
    if not isinstance(parts, Mapping) or not isinstance(parts.get("options"), Mapping):
        return record["train_size"]  # older records: a built-in method whose steps read examples
    spec = method_specs.MethodSpec(record["method"], parts["objective"], parts["tuning"], parts["options"],
                                   extras=tuple(parts.get("extras") or ()))
    try:
        return spec.epoch_examples(record["train_size"])
    except KeyError:  # a part this version does not know (a newer record's): its steps read examples
        return record["train_size"]


def _evaluated_rows(record: Mapping[str, Any], steps: int) -> int:
    """Dev rows at each dev evaluation, test rows once and at each budget passed on the way."""
    budgets = [b for b in record.get("budgets") or [] if b.get("reached") and b["steps"] < steps]
    dev_rows, test_rows = record.get("dev_size") or 0, record.get("test_size") or 0
    return len(record.get("dev_curve") or []) * dev_rows + (1 + len(budgets)) * test_rows


def sample_of(record: Mapping[str, Any], source: int, folder: str = "") -> Sample | None:
    """A checked record as a :class:`Sample` (None: a record that cannot calibrate: no time, a
    method whose parts it does not name, or a run that took over its pilot's record and time)."""
    timing, kind = record["timing"], _kind(record)
    settings = _settings(record) if isinstance(record.get("hyperparameters"), Mapping) else None
    if kind is None or settings is None or (record.get("lr_selection") or {}).get("pilot"):
        return None
    steps = int(timing.get("steps") or 0)
    process = timing.get("process_s") or timing["wall_s"]
    train_s, eval_s = float(timing.get("train_s") or 0.0), float(timing.get("eval_s") or 0.0)
    tokens = timing.get("tokens_per_s")
    batch = mean_batch(_epoch_examples(record), settings.batch_size) if record["train_size"] else 1.0
    extra = None
    if steps and settings.patience and settings.eval_every and stopped(record) in ("patience", "cap"):
        extra = max(0.0, (steps - patience_floor(settings, record["train_size"])) / settings.eval_every)
    cpu = read_cpu(record.get("device") or "")
    return Sample(
        source=source, folder=folder, model=model_label(record["model"]), task=record["task"], kind=kind,
        max_length=settings.max_length, train_size=record["train_size"], steps=steps, train_s=train_s, eval_s=eval_s,
        eval_rows=_evaluated_rows(record, steps), overhead_s=max(0.0, float(process) - train_s - eval_s),
        tokens_per_step=tokens * train_s / steps if steps and tokens else None, extra_evaluations=extra,
        cpu=cpu[0] if cpu else str(record.get("device")), threads=cpu[1] if cpu else None,
        engine=record["hyperparameters"].get("engine", ENGINE_BEFORE_THE_KEY),
        precision=str(record.get("precision")), batch=batch)


def read_samples(folders: Sequence[tuple[Path, int]]) -> list[Sample]:
    """The samples of every run record under each folder (searched recursively; a folder that is
    not there holds none), each with its folder's rank. A file under a reference folder (rank 1)
    that is not a run record is an error naming it; under the study's own (rank 0) it is left
    out: the study trains that run again (promptworth.study.reuse)."""
    samples = []
    for folder, source in folders:
        for path in sorted(Path(folder).rglob("*.json")):
            try:
                record = read_record(path)
            except PromptworthError:
                if source == 0:
                    continue
                raise
            sample = sample_of(record, source, str(folder))
            if sample is not None:
                samples.append(sample)
    return samples


@dataclass(frozen=True)
class Here:
    """What a study's runs will run on: this machine's CPU, each run's threads, the engine."""

    cpu: str
    threads: int
    precision: str  # bf16 or fp32, as the runs will resolve it
    engine: str = ENGINE_BEFORE_THE_KEY

    def rank(self, sample: Sample) -> tuple[int, ...]:
        """The nearer, the smaller: the folder's order first (a study's own records before any
        other's), then the same precision, CPU, threads and engine."""
        return (sample.source, sample.precision != self.precision, sample.cpu != self.cpu,
                sample.threads != self.threads, sample.engine != self.engine)


def preferred(samples: Iterable[Sample], here: Here, keep: Callable[[Sample], bool]) -> list[Sample]:
    """The samples ``keep`` accepts, of the nearest rank only (:meth:`Here.rank`)."""
    chosen = [sample for sample in samples if keep(sample)]
    if not chosen:
        return []
    best = min(here.rank(sample) for sample in chosen)
    return [sample for sample in chosen if here.rank(sample) == best]


@dataclass(frozen=True)
class Line:
    """Seconds of a step as ``intercept + slope x tokens of the step``; ``why``: how it was drawn
    from records other than the run's own kind of run (empty: from them)."""

    intercept: float
    slope: float
    why: tuple[str, ...] = ()

    def at(self, tokens: float) -> float:
        return self.intercept + self.slope * tokens

    def scaled(self, factor: float, why: str) -> "Line":
        return Line(self.intercept * factor, self.slope * factor, (*self.why, why))


def fit_line(samples: Sequence[Sample]) -> Line:
    """Least squares of seconds per step against tokens per step, each record weighted by its steps;
    through zero where the records are of one task (a line needs two) or the fit would give a step
    of no tokens a negative time."""
    weights = [s.steps for s in samples]
    xs, ys = [s.tokens_per_step for s in samples], [s.train_s / s.steps for s in samples]
    total = sum(weights)
    proportional = Line(0.0, sum(s.train_s for s in samples) / sum(s.steps * s.tokens_per_step for s in samples))
    if len({s.task for s in samples}) < 2:
        return proportional
    mean_x = sum(w * x for w, x in zip(weights, xs)) / total
    mean_y = sum(w * y for w, y in zip(weights, ys)) / total
    spread = sum(w * (x - mean_x) ** 2 for w, x in zip(weights, xs))
    if spread <= 0:
        return proportional
    slope = sum(w * (x - mean_x) * (y - mean_y) for w, x, y in zip(weights, xs, ys)) / spread
    intercept = mean_y - slope * mean_x
    return Line(intercept, slope) if slope > 0 and intercept >= 0 else proportional


@dataclass
class Calibration:
    """The estimate's questions, answered from ``samples`` for runs on ``here`` (each answer once:
    they are cached); ``used``: the samples some answer drew on."""

    samples: list[Sample]
    here: Here
    used: set[int] = field(default_factory=set)
    _cache: dict[tuple, Any] = field(default_factory=dict)

    def _pick(self, keep: Callable[[Sample], bool]) -> list[Sample]:
        chosen = preferred(self.samples, self.here, keep)
        self.used.update(id(sample) for sample in chosen)
        return chosen

    def _cached(self, key: tuple, answer: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = answer()
        return self._cache[key]

    def knows(self, model: str) -> bool:
        """Whether some record is of ``model``."""
        return any(sample.model == model for sample in self.samples)

    def used_samples(self) -> list[Sample]:
        return [sample for sample in self.samples if id(sample) in self.used]

    def tokens(self, model: str, task: str, max_length: int) -> tuple[float | None, tuple[str, ...]]:
        """Tokens per training example of ``task`` for ``model`` at ``max_length`` (its records of
        the task, any method); else at another max_length, or another model's on the task times the
        two tokenizers' ratio on tasks both ran, or the model's mean over its tasks (extrapolated)."""
        return self._cached(("tokens", model, task, max_length), lambda: self._tokens(model, task, max_length))

    def _mean_tokens(self, keep: Callable[[Sample], bool]) -> float | None:
        chosen = [s for s in self._pick(lambda s: s.tokens_per_step is not None and keep(s))]
        if not chosen:
            return None
        return sum(s.tokens_per_step * s.steps for s in chosen) / sum(s.batch * s.steps for s in chosen)

    def _tokens(self, model: str, task: str, max_length: int) -> tuple[float | None, tuple[str, ...]]:
        own = self._mean_tokens(lambda s: s.model == model and s.task == task and s.max_length == max_length)
        if own is not None:
            return own, ()
        own = self._mean_tokens(lambda s: s.model == model and s.task == task)
        if own is not None:
            return own, (f"{task}'s tokens from {model}'s records at another max_length than {max_length}",)
        mine = {s.task for s in self.samples if s.model == model and s.tokens_per_step is not None}
        for other in sorted({s.model for s in self.samples if s.task == task and s.model != model}):
            common = sorted(mine & {s.task for s in self.samples if s.model == other and s.tokens_per_step is not None})
            theirs = self._mean_tokens(lambda s: s.model == other and s.task == task)
            if common and theirs is not None:
                ratio = statistics.mean(self._mean_tokens(lambda s, t=t: s.model == model and s.task == t)
                                        / self._mean_tokens(lambda s, t=t: s.model == other and s.task == t)
                                        for t in common)
                return theirs * ratio, (f"{task}'s tokens from {other}'s records",)
        mean = self._mean_tokens(lambda s: s.model == model)
        return (mean, (f"{task}'s tokens: the mean of {model}'s other tasks",)) if mean is not None else (None, ())

    def step_line(self, model: str, kind: str, max_length: int) -> Line | None:
        """Seconds of a step of ``model`` and ``kind`` at ``max_length``: from its records (at
        another max_length where none has this one); from another model's records of the kind,
        times the two models' ratio on a kind both ran; None where neither is there."""
        return self._cached(("step", model, kind, max_length), lambda: self._step_line(model, kind, max_length))

    def _trained(self, model: str, kind: str, max_length: int | None = None) -> list[Sample]:
        return self._pick(lambda s: s.model == model and s.kind == kind and s.tokens_per_step is not None
                          and (max_length is None or s.max_length == max_length))

    def _step_line(self, model: str, kind: str, max_length: int) -> Line | None:
        chosen, why = self._trained(model, kind, max_length), ()
        if not chosen:
            chosen = self._trained(model, kind)
            why = (f"{model} {kind} at max_length {max_length} from records at "
                   f"{', '.join(str(n) for n in sorted({s.max_length for s in chosen}))}",) if chosen else ()
        if chosen:
            line = fit_line(chosen)
            return Line(line.intercept, line.slope, why)
        for other in sorted({s.model for s in self.samples if s.kind == kind and s.model != model}):
            ratio = self._model_ratio(model, other, max_length)
            theirs = self._step_line(other, kind, max_length) if ratio is not None else None
            if theirs is not None:
                return theirs.scaled(ratio[0], f"{model} {kind} from {other}'s, times the two models' ratio on "
                                               f"{ratio[1]}")
        return None

    def _model_ratio(self, model: str, other: str, max_length: int) -> tuple[float, str] | None:
        """How much longer a step of ``model`` takes than one of ``other`` at the same tokens: on a
        kind both ran (``full`` first), their lines at the tokens of ``model``'s records."""
        kinds = {s.kind for s in self.samples if s.model == model and s.tokens_per_step is not None}
        both = sorted(kinds & {s.kind for s in self.samples if s.model == other and s.tokens_per_step is not None},
                      key=lambda kind: (kind != "full", kind))
        if not both:
            return None
        mine = self._trained(model, both[0], max_length) or self._trained(model, both[0])
        line = fit_line(self._trained(other, both[0], max_length) or self._trained(other, both[0]))
        return sum(s.train_s for s in mine) / sum(s.steps * line.at(s.tokens_per_step) for s in mine), both[0]

    def row_seconds(self, model: str, task: str, kind: str, max_length: int) -> tuple[float | None, tuple[str, ...]]:
        """Seconds to evaluate one row: from ``model``'s records of ``task`` whose rows are shaped
        like the run's (:func:`eval_class`) at ``max_length``; else from its other tasks, per token
        (a task's tokens from :meth:`tokens`); else at another max_length (extrapolated)."""
        return self._cached(("row", model, task, eval_class(kind), max_length),
                            lambda: self._row_seconds(model, task, eval_class(kind), max_length))

    def _row_seconds(self, model: str, task: str, shape: str, max_length: int) -> tuple[float | None, tuple[str, ...]]:
        def evaluated(s: Sample) -> bool:
            return s.model == model and eval_class(s.kind) == shape and s.eval_rows > 0

        chosen = self._pick(lambda s: evaluated(s) and s.task == task and s.max_length == max_length)
        if chosen:
            return sum(s.eval_s for s in chosen) / sum(s.eval_rows for s in chosen), ()
        tokens, why = self.tokens(model, task, max_length)
        for same_length in (True, False):
            chosen = [s for s in self._pick(lambda s: evaluated(s) and (s.max_length == max_length) == same_length)
                      if self.tokens(model, s.task, s.max_length)[0] is not None]
            if chosen and tokens is not None:
                per_token = (sum(s.eval_s for s in chosen)
                             / sum(s.eval_rows * self.tokens(model, s.task, s.max_length)[0] for s in chosen))
                other = () if same_length else (
                    f"{model}'s evaluations at max_length {max_length} from records at others",)
                return per_token * tokens, (*why, *other)
        return None, ()

    def overhead(self, model: str) -> float:
        """A run's seconds outside its steps and evaluations (loading the model, writing the
        record): the median of ``model``'s records, else of all."""
        def answer() -> float:
            chosen = self._pick(lambda s: s.model == model) or self._pick(lambda s: True)
            return statistics.median(s.overhead_s for s in chosen) if chosen else 0.0
        return self._cached(("overhead", model), answer)

    def extra_evaluations(self, train_size: int) -> tuple[list[float], int | None]:
        """The dev evaluations past the earliest stop of the finished runs stopped by patience at
        the training-set size nearest ``train_size`` (on a log scale), and that size; none: ([], None)."""
        def answer() -> tuple[list[float], int | None]:
            chosen = self._pick(lambda s: s.extra_evaluations is not None)
            if not chosen:
                return [], None
            size = min({s.train_size for s in chosen}, key=lambda n: (abs(math.log(n / max(train_size, 1))), -n))
            return [s.extra_evaluations for s in chosen if s.train_size == size], size
        return self._cached(("extra", train_size), answer)
