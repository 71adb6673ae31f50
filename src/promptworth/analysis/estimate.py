"""The data advantage of one curve over another at one setting (:class:`AdvantageOptions`): the
estimate and, where the curves never cross, the bound it is."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from promptworth.analysis.curves import (
    Curve,
    REDUCTIONS,
    RunMatrix,
    WINDOWS,
    X_SCALES,
    ZERO_SHOT,
    build_curve,
    clamped_levels,
    points_needed,
    score_levels,
    score_window,
    zero_segment_levels,
)
from promptworth.analysis.intervals import check_confidence
from promptworth.errors import PromptworthError


INTERVALS = ("bootstrap", "loo")


# Score levels are held in memory once per estimate (the paper uses 1,000).
MAX_LEVELS = 1_000_000


# What a bound says, as the tables write it.
BOUND_SIGNS = {"more_than": ">", "less_than": "<", "at_least": "≥", "at_most": "≤"}


@dataclass(frozen=True)
class AdvantageOptions:
    """How the advantage is computed. The defaults are the studies' headline estimator (mean over
    seeds, bootstrap interval); :meth:`lescao` gives Le Scao & Rush's published procedure."""

    reduction: str = "mean"
    x_scale: str = "linear"
    window: str = "overlap"
    levels: int = 1000
    ddof: int = 0
    # Methods whose curves define the score window (None: the two compared). The paper's
    # "prompt vs null" and "null vs head" numbers use the prompt-vs-head window.
    window_from: tuple[str, ...] | None = None
    interval: str = "bootstrap"
    confidence: float = 0.95
    # the most bootstrap resamples: every distinct one when there are no more, else this many draws
    resamples: int = 2000
    # only the sizes every method involved ran (False: each curve on its own sizes)
    matched: bool = True
    # the untrained point (size 0) of the methods that have it (False: trained sizes only)
    zero_point: bool = True
    # sizes left out (the sensitivity table)
    leave_out: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        for name, value, allowed in (
            ("reduction", self.reduction, REDUCTIONS),
            ("x scale", self.x_scale, X_SCALES),
            ("window", self.window, WINDOWS),
            ("interval", self.interval, INTERVALS),
        ):
            if value not in allowed:
                raise PromptworthError(f"unknown {name} {value!r}; choose one of {', '.join(allowed)}")
        if not isinstance(self.levels, int) or not 1 <= self.levels <= MAX_LEVELS:
            raise PromptworthError(
                f"the number of levels must be an integer from 1 to {MAX_LEVELS:,}, got {self.levels!r}"
            )
        if self.ddof not in (0, 1):
            raise PromptworthError(f"ddof must be 0 or 1, got {self.ddof!r}")
        if self.window_from is not None and len(self.window_from) < 1:
            raise PromptworthError("window_from needs at least one method")
        check_confidence(self.confidence)
        if not isinstance(self.resamples, int) or not 10 <= self.resamples <= 100_000:
            raise PromptworthError(f"the number of bootstrap resamples must be from 10 to 100,000, got {self.resamples!r}")

    @classmethod
    def lescao(cls, **changes: object) -> "AdvantageOptions":
        """Le Scao & Rush's procedure: the best run per size, the leave-one-run-out std."""
        return cls(**{"reduction": "max", "interval": "loo", **changes})  # type: ignore[arg-type]

    def describe(self) -> str:
        """The estimator in words, as the tables' notes say it."""
        curve = {"max": "best of the seeds", "mean": "mean over seeds", "median": "median over seeds"}[self.reduction]
        spread = (f"{self.confidence:.0%} bootstrap interval over data seeds" if self.interval == "bootstrap"
                  else "± leave-one-run-out std")
        return f"{curve} per size, running maximum; {spread}"


@dataclass(frozen=True)
class Estimate:
    """One point estimate. ``advantage`` is NaN when undefined or when the curves do not overlap;
    ``bound_kind`` says what ``bound`` is (see :data:`BOUND_SIGNS`; "" when not a bound)."""

    advantage: float
    window: tuple[float, float]
    reason: str = ""
    bound: float = math.nan
    bound_kind: str = ""
    clamped_share: float = 0.0
    zero_segment_share: float = 0.0

    @property
    def value(self) -> float:
        """For resampling: the number, +inf / -inf beyond a no-overlap bound, NaN when undefined."""
        if self.bound_kind == "more_than":
            return math.inf
        if self.bound_kind == "less_than":
            return -math.inf
        return self.advantage


def no_overlap_bound(treatment: Curve, baseline: Curve) -> tuple[float, str]:
    """(bound, kind) of two curves that do not overlap; (NaN, "") when they do. The treatment at
    its smallest size above the baseline at its largest: worth more than the sizes between."""
    if treatment.lo > baseline.hi:
        return float(baseline.sizes[-1] - treatment.sizes[0]), "more_than"
    if baseline.lo > treatment.hi:
        return -float(treatment.sizes[-1] - baseline.sizes[0]), "less_than"
    return math.nan, ""


def _window_problem(curves: list[Curve], window: tuple[float, float], mode: str) -> str:
    lo, hi = window
    if lo < hi:
        return ""
    ranges = ", ".join(f"[{c.lo:.4g}, {c.hi:.4g}]" for c in curves)
    if mode == "full":
        return f"every curve is flat at {lo:.4g}: no score range to compare"
    if lo > hi:
        return f"score ranges do not overlap ({ranges})"
    return f"the shared score range has zero height ({ranges}; flat or single-size curve)"


def estimate(matrices: dict[str, RunMatrix], treatment: str, baseline: str, options: AdvantageOptions) -> Estimate:
    """The advantage of ``treatment`` over ``baseline`` from run matrices by method (the window
    methods included), as the module docstring says."""
    nan_window = (math.nan, math.nan)
    curves: dict[str, Curve] = {}
    for method, matrix in matrices.items():
        curve = build_curve(matrix, options.reduction)
        if curve is None:
            return Estimate(math.nan, nan_window, f"no scores of {method!r}")
        curves[method] = curve
    t, b = curves[treatment], curves[baseline]
    window_curves = [curves[m] for m in options.window_from or (treatment, baseline)]
    if options.window == "full":
        window_curves += [t, b]
    window = score_window(window_curves, options.window)
    bound, kind = no_overlap_bound(t, b)
    if kind:
        return Estimate(math.nan, window, f"score ranges do not overlap ([{t.lo:.4g}, {t.hi:.4g}], "
                                          f"[{b.lo:.4g}, {b.hi:.4g}])", bound, kind)
    trained = [build_curve(matrices[m], options.reduction, trained_only=True) for m in (treatment, baseline)]
    if all(c is not None for c in trained) and any(c.sizes[0] == ZERO_SHOT for c in (t, b)):
        bound, kind = no_overlap_bound(*trained)  # type: ignore[arg-type]
        if kind:
            return Estimate(math.nan, window, "the curves overlap only on the line drawn from the untrained "
                                              "point (size 0): among trained sizes they do not", bound, kind)
    problem = _window_problem(window_curves, window, options.window)
    if problem:
        return Estimate(math.nan, window, problem)
    levels = score_levels(window[0], window[1], options.levels)
    gap = points_needed(b, levels, options.x_scale) - points_needed(t, levels, options.x_scale)
    advantage = float(np.mean(gap))
    clamped_t, clamped_b = clamped_levels(t, levels), clamped_levels(b, levels)
    clamped_share = float(np.mean(clamped_t | clamped_b))
    zero_share = float(np.mean(zero_segment_levels(t, levels) | zero_segment_levels(b, levels)))
    if clamped_t.any() and clamped_b.any():
        return Estimate(math.nan, window, "both curves stop below the window's top: neither a number nor a bound",
                        clamped_share=clamped_share, zero_segment_share=zero_share)
    kind = "at_least" if clamped_b.any() else "at_most" if clamped_t.any() else ""
    return Estimate(advantage, window, "", advantage if kind else math.nan, kind, clamped_share, zero_share)
