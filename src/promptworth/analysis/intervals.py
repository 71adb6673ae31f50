"""Confidence intervals: a bootstrap over resampling units (data seeds), and Student's t interval
for a mean of paired differences. Pure numpy and scipy; nothing here knows about curves.

With few units a bootstrap has few distinct resamples: ``n`` units have ``C(2n - 1, n)`` multisets
(2 seeds: 3, 5 seeds: 126). Up to ``resamples`` of them are enumerated exactly, each weighted by
its multinomial probability, so the interval is the exact bootstrap distribution's and the same on
every machine; beyond that, ``resamples`` draws from a generator with a fixed seed.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats

from promptworth.errors import PromptworthError

BOOTSTRAP_SEED = 20210401  # fixed: the same records give the same intervals


@dataclass(frozen=True)
class Resample:
    """One bootstrap resample: how many copies of each unit were drawn, and its probability."""

    copies: dict[str, int]
    weight: float


def distinct_resamples(n: int) -> int:
    """How many different multisets of ``n`` units drawn ``n`` times with replacement there are."""
    return math.comb(2 * n - 1, n)


def bootstrap_plan(units: Sequence[str], resamples: int) -> tuple[list[Resample], bool]:
    """(resamples, exact): every distinct resample with its probability when there are at most
    ``resamples`` of them, else ``resamples`` random draws of weight 1/resamples."""
    units = list(units)
    n = len(units)
    if n == 0:
        return [], True
    if distinct_resamples(n) <= resamples:
        plan = []
        for drawn in itertools.combinations_with_replacement(range(n), n):
            counts = np.bincount(drawn, minlength=n)
            ways = math.factorial(n) / math.prod(math.factorial(int(c)) for c in counts)
            plan.append(Resample({u: int(c) for u, c in zip(units, counts) if c}, ways / n**n))
        return plan, True
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    plan = []
    for _ in range(resamples):
        counts = np.bincount(rng.integers(0, n, size=n), minlength=n)
        plan.append(Resample({u: int(c) for u, c in zip(units, counts) if c}, 1.0 / resamples))
    return plan, False


def weighted_quantile(values: Sequence[float], weights: Sequence[float], q: float) -> float:
    """The smallest value whose cumulative weight reaches ``q`` of the total (the inverted CDF:
    with equal weights, numpy's ``method="inverted_cdf"``); ±inf are values like any other."""
    values, weights = np.asarray(values, float), np.asarray(weights, float)
    if not len(values):
        return math.nan
    order = np.argsort(values, kind="stable")
    cumulative = np.cumsum(weights[order]) / weights.sum()
    # a tolerance: exact probabilities summed in floating point may miss q by an ulp
    index = int(np.searchsorted(cumulative, q - 1e-12, side="left"))
    return float(values[order][min(index, len(values) - 1)])


def percentile_interval(values: Sequence[float], weights: Sequence[float], confidence: float) -> tuple[float, float]:
    """The equal-tailed interval of a weighted sample: its (1-c)/2 and (1+c)/2 quantiles."""
    tail = (1.0 - confidence) / 2
    return weighted_quantile(values, weights, tail), weighted_quantile(values, weights, 1.0 - tail)


def t_interval(differences: Sequence[float], confidence: float) -> tuple[float, float, float]:
    """(mean, lower, upper) of Student's t interval for the mean of ``differences`` (NaN bounds
    for fewer than two; a zero-width interval when they are all equal)."""
    values = np.asarray(differences, float)
    if not len(values):
        return math.nan, math.nan, math.nan
    mean = float(values.mean())
    if len(values) < 2:
        return mean, math.nan, math.nan
    spread = float(values.std(ddof=1))
    half = float(stats.t.ppf((1.0 + confidence) / 2, df=len(values) - 1)) * spread / math.sqrt(len(values))
    return mean, mean - half, mean + half


def check_confidence(confidence: float) -> None:
    if not (isinstance(confidence, float) and 0.5 <= confidence < 1.0):
        raise PromptworthError(f"the confidence level must be a number from 0.5 to below 1, got {confidence!r}")
