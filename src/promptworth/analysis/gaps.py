"""The gap at each size: the treatment's test score minus the baseline's, at every training-set
size both ran, paired on the data seed (the two methods' runs on a seed share its split), with
the mean over seeds and Student's t interval. It needs no curve and no interpolation: the plainest
statement of the answer, beside the data advantage.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from promptworth.analysis.advantage import Comparison, comparison_matrices
from promptworth.analysis.curves import MODEL, RunMatrix, check_tidy
from promptworth.analysis.intervals import check_confidence, t_interval
from promptworth.analysis.joins import models_cell

GAP_COLUMNS = ("model", "task", "treatment", "baseline", "train_size", "n_seeds", "treatment_mean", "baseline_mean",
               "gap", "lower", "upper", "confidence")


def seed_means(matrix: RunMatrix, size: float) -> dict[str, float]:
    """At ``size``, each data seed's mean score over its runs (its training seeds)."""
    row = matrix.scores[matrix.sizes == size]
    if not len(row):
        return {}
    by_unit: dict[str, list[float]] = {}
    for unit, score in zip(matrix.units, row[0]):
        if not np.isnan(score):
            by_unit.setdefault(unit, []).append(float(score))
    return {unit: float(np.mean(scores)) for unit, scores in by_unit.items()}


def size_means(matrix: RunMatrix, confidence: float = 0.95) -> pd.DataFrame:
    """One method's curve as the figures draw it: per size, the mean over data seeds (each seed's
    runs averaged first) with Student's t interval, and the number of seeds."""
    rows = []
    for size in matrix.sizes:
        means = list(seed_means(matrix, size).values())
        if means:
            mean, lower, upper = t_interval(means, confidence)
            rows.append({"train_size": float(size), "mean": mean, "lower": lower, "upper": upper, "n_seeds": len(means)})
    return pd.DataFrame(rows, columns=["train_size", "mean", "lower", "upper", "n_seeds"])


def paired_gaps(treatment: RunMatrix, baseline: RunMatrix, confidence: float = 0.95) -> list[dict[str, float]]:
    """Per trained size both ran (increasing), the paired gap over the data seeds both have there."""
    rows = []
    for size in sorted(treatment.trained_sizes() & baseline.trained_sizes()):
        t, b = seed_means(treatment, size), seed_means(baseline, size)
        shared = sorted(set(t) & set(b))
        if not shared:
            continue
        gap, lower, upper = t_interval([t[u] - b[u] for u in shared], confidence)
        rows.append({"train_size": int(size), "n_seeds": len(shared),
                     "treatment_mean": float(np.mean([t[u] for u in shared])),
                     "baseline_mean": float(np.mean([b[u] for u in shared])),
                     "gap": gap, "lower": lower, "upper": upper})
    return rows


def gaps_frame(results: pd.DataFrame, comparisons: Sequence[Comparison], confidence: float = 0.95) -> pd.DataFrame:
    """Every comparison's per-size gaps on every model and task that ran both of its methods."""
    check_confidence(confidence)
    tidy = check_tidy(results)
    rows = []
    for comparison in comparisons:
        for (model, task), runs in tidy.groupby([MODEL, "task"], sort=False):
            matrices = comparison_matrices(runs, (comparison.treatment, comparison.baseline))
            if len(matrices) < 2:
                continue
            named = models_cell(runs, comparison.treatment, comparison.baseline, str(model))
            for row in paired_gaps(matrices[comparison.treatment], matrices[comparison.baseline], confidence):
                rows.append({"model": named, "task": task, "treatment": comparison.treatment,
                             "baseline": comparison.baseline, **row, "confidence": confidence})
    return pd.DataFrame(rows, columns=list(GAP_COLUMNS))
