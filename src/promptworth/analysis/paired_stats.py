"""Two methods compared row by row on the test rows both scored: McNemar's exact test of one pair
of runs, and a bootstrap of the accuracy gap over data seeds and test rows. Pure numpy and scipy;
docs/analysis.md ("Paired comparisons") says why the rows are resampled as they are.

The bootstrap resamples the data seeds (the exact plan of :mod:`promptworth.analysis.intervals`:
every distinct resample with its probability while there are at most ``resamples`` of them) and,
for each seed resample, the test rows: once per test set, the same row resample for every seed
that scored that set. The seeds of a study share one test set, so its sampling error is common to
them all and does not average out over seeds; resampling the rows anew within each seed (a nested
bootstrap) would treat the seeds' test sets as independent samples and understate it. Crossed
seeds and rows resampled independently of each other is Owen's (2007) pigeonhole bootstrap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
from scipy import stats

from promptworth.analysis.intervals import BOOTSTRAP_SEED, bootstrap_plan, percentile_interval

# Row resamples drawn at once (memory: this many times the test rows, as 8-byte indices)
_CHUNK = 64


@dataclass(frozen=True)
class PairCounts:
    """Two runs on the same test rows: the rows only the treatment got right, those only the
    baseline got right (the discordant rows), and all the rows."""

    treatment_only: int
    baseline_only: int
    rows: int

    @property
    def gap(self) -> float:
        """The treatment's accuracy minus the baseline's."""
        return (self.treatment_only - self.baseline_only) / self.rows

    @property
    def mcnemar_p(self) -> float:
        """McNemar's exact test (two-sided): under the null each discordant row is the treatment's
        with probability 1/2, a binomial test of ``treatment_only`` of the discordant rows (1 when
        there are none: the runs agree on every row)."""
        discordant = self.treatment_only + self.baseline_only
        if not discordant:
            return 1.0
        return float(stats.binomtest(self.treatment_only, discordant, 0.5).pvalue)


def pair_counts(treatment_correct: np.ndarray, baseline_correct: np.ndarray) -> PairCounts:
    """The discordant counts of two runs, from whether each got each row right (same rows, same order)."""
    if treatment_correct.shape != baseline_correct.shape or not len(treatment_correct):
        raise AssertionError("two runs are paired on the same, non-empty, rows")
    return PairCounts(int(np.sum(treatment_correct & ~baseline_correct)),
                      int(np.sum(~treatment_correct & baseline_correct)), len(treatment_correct))


@dataclass(frozen=True)
class SeedRows:
    """One data seed's row-by-row differences (treatment right minus baseline right: -1, 0 or 1,
    averaged over the seed's pairs of runs, its training seeds) and the test set they are on."""

    differences: np.ndarray
    test_set: str  # the rows' sha256: seeds with the same one share their row resample

    @property
    def gap(self) -> float:
        return float(self.differences.mean())


@dataclass(frozen=True)
class GapIntervals:
    """The gap (mean over the seeds of each seed's gap) with its two bootstrap intervals:
    ``seeds``, the seeds resampled and each seed's rows as they are; ``rows``, the seeds and the
    test rows resampled (crossed). ``draws``: how many row resamples the second drew."""

    gap: float
    seeds: tuple[float, float]
    rows: tuple[float, float]
    exact_seeds: bool
    draws: int


def _resampled_gaps(seeds: Sequence[SeedRows], draws: int, rng: np.random.Generator) -> np.ndarray:
    """``draws`` x seeds: each seed's gap on ``draws`` row resamples, one resample per test set
    shared by every seed on it."""
    out = np.empty((draws, len(seeds)))
    for test_set in dict.fromkeys(s.test_set for s in seeds):
        members = [i for i, s in enumerate(seeds) if s.test_set == test_set]
        stacked = np.stack([seeds[i].differences for i in members])  # seeds x rows
        n = stacked.shape[1]
        for start in range(0, draws, _CHUNK):
            rows = rng.integers(0, n, size=(min(_CHUNK, draws - start), n))
            out[start : start + len(rows), members] = stacked[:, rows].mean(axis=2).T
    return out


def gap_intervals(by_seed: Mapping[str, SeedRows], confidence: float, resamples: int) -> GapIntervals:
    """The gap over the data seeds ``by_seed`` and its percentile intervals: over the seeds alone,
    and over the seeds and the test rows (each seed resample gets ``ceil(resamples / plan size)``
    row resamples, weighted equally within it). Deterministic: a fixed generator seed."""
    units = list(by_seed)
    seeds = [by_seed[u] for u in units]
    gaps = np.array([s.gap for s in seeds])
    plan, exact = bootstrap_plan(units, resamples)
    copies = np.array([[resample.copies.get(u, 0) for u in units] for resample in plan], float)
    weights = np.array([resample.weight for resample in plan])
    seed_values = copies @ gaps / copies.sum(axis=1)
    per_resample = max(1, math.ceil(resamples / len(plan)))
    row_gaps = _resampled_gaps(seeds, len(plan) * per_resample, np.random.default_rng(BOOTSTRAP_SEED))
    repeated = np.repeat(copies, per_resample, axis=0)
    row_values = np.sum(repeated * row_gaps, axis=1) / repeated.sum(axis=1)
    return GapIntervals(
        gap=float(gaps.mean()),
        seeds=percentile_interval(seed_values, weights, confidence),
        rows=percentile_interval(row_values, np.repeat(weights / per_resample, per_resample), confidence),
        exact_seeds=exact,
        draws=len(row_values),
    )
