"""The data advantage of one method over another (Le Scao & Rush, NAACL 2021), with its interval.

How many training points the baseline needs, on average over score levels, beyond what the
treatment needs to reach the same test score (``docs/analysis.md`` says it exactly):

1. the sizes both methods ran (a matched ladder; each keeps its own untrained point, size 0);
2. per method and size, the runs reduced to one score (the mean over seeds; Le Scao & Rush: the
   best), then a running maximum over increasing sizes: a monotone curve;
3. score window: from the larger of the curves' minima to the smaller of their maxima, and
   ``levels`` evenly spaced interior levels of it;
4. per level and curve, the size at which the piecewise-linear curve first reaches the level;
5. advantage = mean over levels of (baseline's size - treatment's size);
6. its interval: a bootstrap over data seeds (the methods' runs on a seed resampled together,
   since they share its split), or Le Scao & Rush's leave-one-run-out standard deviation.

Where the data say only that one method is ahead, the result is a **bound**, never a number: the
curves do not overlap (``>``/``<``), they overlap only on the straight segment drawn from the
untrained point to the first trained size (``>``), or a curve never reaches some levels of the
window (clamped: ``≥``/``≤``). Everything here is pure: tidy tables in, small dataclasses out.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass
from typing import Iterable

import numpy as np
import pandas as pd

from promptworth.analysis.curves import (
    MODEL,
    ZERO_SHOT,
    Ladder,
    RunMatrix,
    check_tidy,
    matched_ladder,
    on_ladder,
    run_matrix,
)
from promptworth.analysis.joins import models_cell
from promptworth.analysis.intervals import bootstrap_plan, distinct_resamples, percentile_interval
from promptworth.errors import PromptworthError
from promptworth.analysis.estimate import AdvantageOptions, estimate

# Fewer data seeds than this give a bootstrap too few distinct resamples to be read as an interval.
MIN_INFORMATIVE_SEEDS = 5


@dataclass(frozen=True)
class AdvantageResult:
    """One comparison on one task of one model: the estimate, its interval and how it was made.
    ``reason`` says why ``advantage`` or the interval is NaN, or what to know about them ("" if nothing)."""

    model: str
    task: str
    treatment: str
    baseline: str
    advantage: float
    lower: float
    upper: float
    bound: float
    bound_kind: str
    std: float
    reduction: str
    interval: str
    confidence: float
    n_seeds: int
    n_resamples: int
    share_bound: float
    share_undefined: float
    clamped_share: float
    zero_segment_share: float
    window_lo: float
    window_hi: float
    ladder: str
    dropped: str
    n_runs_treatment: int
    n_runs_baseline: int
    n_loo: int
    x_scale: str
    window: str
    levels: int
    reason: str = ""

    @property
    def n_runs(self) -> str:
        return f"{self.n_runs_treatment}/{self.n_runs_baseline}"

    @property
    def is_bound(self) -> bool:
        return bool(self.bound_kind)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready: NaN becomes None, ±inf (an interval end beyond a bound) the text "inf" / "-inf"."""
        out: dict[str, object] = {}
        for key, value in asdict(self).items():
            if isinstance(value, float) and math.isnan(value):
                value = None
            elif isinstance(value, float) and math.isinf(value):
                value = "inf" if value > 0 else "-inf"
            out[key] = value
        return out


@dataclass(frozen=True)
class Comparison:
    """A treatment and the baseline it is compared with."""

    treatment: str
    baseline: str

    @property
    def label(self) -> str:
        return f"{self.treatment} vs {self.baseline}"

    @classmethod
    def parse(cls, text: str) -> "Comparison":
        """``treatment:baseline``."""
        parts = text.split(":")
        if len(parts) != 2 or not all(parts) or parts[0] == parts[1]:
            raise PromptworthError(f"bad comparison {text!r}; write TREATMENT:BASELINE, e.g. prompt:head")
        return cls(parts[0], parts[1])


# ---------------------------------------------------------------------------------------------
# One point estimate


# ---------------------------------------------------------------------------------------------
# One comparison with its interval


@dataclass(frozen=True)
class Spread:
    lower: float = math.nan
    upper: float = math.nan
    std: float = math.nan
    n_resamples: int = 0
    n_loo: int = 0
    share_bound: float = math.nan
    share_undefined: float = math.nan
    note: str = ""


def bootstrap_spread(matrices: dict[str, RunMatrix], treatment: str, baseline: str, options: AdvantageOptions) -> Spread:
    """The percentile interval of the advantage over resamples of the data seeds (all methods'
    runs on a drawn seed come along, as often as it was drawn). A resample beyond a no-overlap
    bound counts as ±inf (the interval reaches past it); an undefined one is left out, and the
    shares of both are reported."""
    units = sorted({unit for m in matrices.values() for unit in m.units})
    if len(units) < 2:
        return Spread(note="one data seed: no interval")
    plan, exact = bootstrap_plan(units, options.resamples)
    values, weights, bounds = [], [], 0.0
    for resample in plan:
        drawn = {method: m.resampled(resample.copies) for method, m in matrices.items()}
        result = estimate(drawn, treatment, baseline, options)
        values.append(result.value)
        weights.append(resample.weight)
        bounds += resample.weight if result.bound_kind else 0.0
    values_a, weights_a = np.array(values), np.array(weights)
    defined = ~np.isnan(values_a)
    lower, upper = percentile_interval(values_a[defined], weights_a[defined], options.confidence)
    share_undefined = float(weights_a[~defined].sum())
    notes = []
    if len(units) < MIN_INFORMATIVE_SEEDS:
        notes.append(f"{len(units)} data seeds: {distinct_resamples(len(units))} distinct bootstrap resamples, "
                     "too few for an informative interval")
    if not exact:
        notes.append(f"{len(plan)} random resamples")
    return Spread(lower, upper, n_resamples=len(plan), share_bound=float(bounds), share_undefined=share_undefined,
                  note="; ".join(notes))


def loo_spread(matrices: dict[str, RunMatrix], treatment: str, baseline: str, options: AdvantageOptions) -> Spread:
    """Le Scao & Rush's error bar: the std of the advantage recomputed leaving out one run of every
    method involved, over all combinations (needs two runs of each)."""
    seeds = {method: m.seeds for method, m in matrices.items()}
    if min(len(s) for s in seeds.values()) < 2:
        return Spread(note="std needs at least two runs of each method (leave-one-out)")
    loo = []
    for left_out in itertools.product(*seeds.values()):
        reduced = {m: matrices[m].without_seed(seed) for m, seed in zip(matrices, left_out)}
        loo.append(estimate(reduced, treatment, baseline, options).advantage)
    finite = [v for v in loo if not math.isnan(v)]
    std = float(np.std(finite, ddof=options.ddof)) if len(finite) > options.ddof else math.nan
    note = (f"{len(loo) - len(finite)} of {len(loo)} leave-one-out estimates undefined, std over the rest"
            if len(finite) < len(loo) else "")
    return Spread(std=std, n_loo=len(finite), note=note)


def _ladder(matrices: dict[str, RunMatrix], options: AdvantageOptions) -> Ladder:
    if options.matched:
        return matched_ladder(matrices, options.zero_point, options.leave_out)
    every = set().union(*(m.trained_sizes() for m in matrices.values())) - set(map(float, options.leave_out))
    if options.zero_point and any(m.has_untrained_point() for m in matrices.values()):
        every.add(float(ZERO_SHOT))
    return Ladder(tuple(sorted(every)), {})


def compare(
    matrices: dict[str, RunMatrix],
    treatment: str,
    baseline: str,
    options: AdvantageOptions = AdvantageOptions(),
    task: str = "",
    model: str = "",
) -> AdvantageResult:
    """Advantage of ``treatment`` over ``baseline`` from run matrices (see
    :func:`promptworth.analysis.curves.run_matrix`) of the two compared methods and any
    ``options.window_from`` methods, on their matched ladder, with its interval."""
    if treatment == baseline:
        raise PromptworthError(f"treatment and baseline are the same method ({treatment!r})")
    involved = list(dict.fromkeys((treatment, baseline, *(options.window_from or ()))))
    absent = [m for m in involved if m not in matrices]
    if absent:
        raise PromptworthError(f"no runs of {', '.join(map(repr, absent))}")
    ladder = _ladder({m: matrices[m] for m in involved}, options)
    trained = [size for size in ladder.sizes if size > ZERO_SHOT]
    if len(trained) < 2:
        own = "; ".join(f"{m}: {', '.join(f'{s:g}' for s in sorted(matrices[m].trained_sizes()))}" for m in involved)
        n_runs = (len(matrices[treatment].seeds), len(matrices[baseline].seeds))
        shared = f"one trained size that every method compared ran ({trained[0]:g}): no curve to read an advantage " \
                 "from (the gap at that size says how far apart they are)" if trained else \
                 "no trained size that every method compared ran"
        return undefined_result(model, task, treatment, baseline, options, f"{shared}; sizes run: {own}", n_runs)
    matrices = on_ladder({m: matrices[m] for m in involved}, ladder)
    point = estimate(matrices, treatment, baseline, options)
    spread = Spread()
    if not (math.isnan(point.advantage) and not point.bound_kind):
        spread = (bootstrap_spread if options.interval == "bootstrap" else loo_spread)(
            matrices, treatment, baseline, options)
    reason = "; ".join(text for text in (point.reason, spread.note, ladder.note()) if text)
    units = {unit for method in (treatment, baseline) for unit in matrices[method].units}
    return AdvantageResult(
        model=model, task=task, treatment=treatment, baseline=baseline, advantage=point.advantage,
        lower=spread.lower, upper=spread.upper, bound=point.bound, bound_kind=point.bound_kind, std=spread.std,
        reduction=options.reduction, interval=options.interval, confidence=options.confidence,
        n_seeds=len(units), n_resamples=spread.n_resamples, share_bound=spread.share_bound,
        share_undefined=spread.share_undefined, clamped_share=point.clamped_share,
        zero_segment_share=point.zero_segment_share, window_lo=float(point.window[0]), window_hi=float(point.window[1]),
        ladder=", ".join(f"{s:g}" for s in ladder.sizes), dropped=ladder.note(),
        n_runs_treatment=len(matrices[treatment].seeds), n_runs_baseline=len(matrices[baseline].seeds),
        n_loo=spread.n_loo, x_scale=options.x_scale, window=options.window, levels=options.levels, reason=reason,
    )


def undefined_result(model: str, task: str, treatment: str, baseline: str, options: AdvantageOptions,
                     reason: str, n_runs: tuple[int, int] = (0, 0)) -> AdvantageResult:
    """The result of a comparison that could not be computed at all (a method without runs)."""
    nan = math.nan
    return AdvantageResult(
        model=model, task=task, treatment=treatment, baseline=baseline, advantage=nan, lower=nan, upper=nan,
        bound=nan, bound_kind="", std=nan, reduction=options.reduction, interval=options.interval,
        confidence=options.confidence, n_seeds=0, n_resamples=0, share_bound=nan, share_undefined=nan,
        clamped_share=nan, zero_segment_share=nan, window_lo=nan, window_hi=nan, ladder="", dropped="",
        n_runs_treatment=n_runs[0], n_runs_baseline=n_runs[1], n_loo=0, x_scale=options.x_scale,
        window=options.window, levels=options.levels, reason=reason,
    )


# ---------------------------------------------------------------------------------------------
# Tables of runs


def check_log_sizes(runs: pd.DataFrame, options: AdvantageOptions) -> None:
    """The log x scale interpolates in log size: a zero-shot run (size 0) has none."""
    if options.x_scale == "log" and options.zero_point and (runs["train_size"] <= 0).any():
        raise PromptworthError("the log x scale needs positive training-set sizes (drop the zero-shot runs)")


def comparison_matrices(rows: pd.DataFrame, methods: Iterable[str]) -> dict[str, RunMatrix]:
    """The run matrix of each of ``methods`` that has rows in ``rows`` (one model's runs on one task)."""
    return {m: run_matrix(rows[rows["method"] == m]) for m in methods if (rows["method"] == m).any()}


def advantage_table(
    results: pd.DataFrame,
    treatment: str,
    baseline: str,
    options: AdvantageOptions = AdvantageOptions(),
    tasks: Iterable[str] | None = None,
) -> list[AdvantageResult]:
    """One :class:`AdvantageResult` per model and task (each in first-seen order; per model, the
    tasks it has runs of) of a tidy results table.

    A task lacking one of the methods gets NaN with the reason; a method absent from the whole
    table, or a requested task absent from it, is an error.
    """
    tidy = check_tidy(results)
    needed = list(dict.fromkeys((treatment, baseline, *(options.window_from or ()))))
    known = list(dict.fromkeys(tidy["method"]))
    unknown = [m for m in needed if m not in known]
    if unknown:
        raise PromptworthError(
            f"method(s) {', '.join(map(repr, unknown))} not in the results; methods present: {', '.join(known)}"
        )
    all_tasks = list(dict.fromkeys(tidy["task"]))
    chosen = list(tasks) if tasks else all_tasks
    absent = [t for t in chosen if t not in all_tasks]
    if absent:
        raise PromptworthError(f"task(s) {', '.join(absent)} not in the results; tasks present: {', '.join(all_tasks)}")
    out = []
    for model, of_model in tidy.groupby(MODEL, sort=False):
        for task in (t for t in chosen if (of_model["task"] == t).any()):
            rows = of_model[(of_model["task"] == task) & of_model["method"].isin(needed)]
            check_log_sizes(rows, options)
            matrices = comparison_matrices(rows, needed)
            missing = [m for m in needed if m not in matrices]
            named = models_cell(rows, treatment, baseline, str(model))
            if missing:
                n_runs = tuple(len(matrices[m].seeds) if m in matrices else 0 for m in (treatment, baseline))
                out.append(undefined_result(named, task, treatment, baseline, options,
                                            f"no runs of {', '.join(missing)}", n_runs))  # type: ignore[arg-type]
                continue
            out.append(compare(matrices, treatment, baseline, options, task=task, model=named))
    return out
